"""Issue 30: the speedup interval from out-of-source errors, independent comparisons and an empirical
quantile; a pick that changes what no published pair changes says 'uncalibrated'."""

from __future__ import annotations

import math

import pytest

from dstune.calibration._conformal import (
    comparisons,
    conformal_factor,
    consecutive_comparisons,
    kind_interval,
    loso_coverage,
)
from dstune.calibration._evidence import load_corpus
from dstune.calibration._pairs import Point, points_from_fitted
from dstune.calibration._shipped import load_fitted
from dstune.record import Basis, Status, TrialRow
from dstune.record._figures import Figures


def _group(source, rows):
    return [Point(f"{source}-{i}", (source, "A100", "8", "e2e"), a, b, m) for i, (a, b, m) in enumerate(rows)]


def test_a_group_of_k_rows_weighs_k_minus_1_comparisons_of_its_kind():
    same = comparisons(_group("s", [(10.0, 12.0, "x"), (20.0, 22.0, "x"), (40.0, 50.0, "x"), (5.0, 5.0, "x")]))
    assert len(same) == 6 and {c.kind for c in same} == {"plan"}
    assert math.isclose(sum(c.weight for c in same), 3.0)  # every pair, but they count as 3, not 6
    mixed = comparisons(_group("t", [(10.0, 10.0, "x"), (20.0, 20.0, "y")]))
    assert [c.kind for c in mixed] == ["model"] and math.isclose(mixed[0].error, 0.0, abs_tol=1e-12)


def test_no_order_of_a_group_is_chosen():
    """The rows' order (here ids that sort them 1, 3, 0, 2) changes nothing: consecutive pairs of one order did."""
    rows = [(10.0, 12.0, "x"), (20.0, 22.0, "x"), (40.0, 90.0, "x"), (5.0, 5.0, "x")]
    forward = _group("s", rows)
    rank = (2, 0, 3, 1)
    renamed = [Point(f"s-{rank[i]}", p.group, p.published, p.predicted, p.model) for i, p in enumerate(forward)]
    assert sorted(c.error**2 for c in comparisons(forward)) == pytest.approx(
        sorted(c.error**2 for c in comparisons(renamed))
    )
    assert sorted(c.error**2 for c in consecutive_comparisons(forward)) != pytest.approx(
        sorted(c.error**2 for c in consecutive_comparisons(renamed))
    )


def test_the_same_model_under_another_step_is_not_a_plan_change():
    """DeepSpeed-Chat's e2e examples time SFT and PPO of one OPT-1.3B: two jobs, not two plans of one."""
    sft = Point("e-sft", ("e", "A6000", "1", "wall"), 10.0, 10.0, "opt-1.3b", "sft")
    ppo = Point("e-ppo", ("e", "A6000", "1", "wall"), 2.0, 2.0, "opt-1.3b", "ppo")
    assert [c.kind for c in comparisons([sft, ppo])] == ["model"]


def test_weighted_quantile_needs_the_weight_of_enough_comparisons():
    errors = [math.log(1.0 + i / 10) for i in range(1, 10)]
    assert math.isclose(conformal_factor(errors, weights=[1.0] * 9), 1.9)
    assert conformal_factor(errors, weights=[0.5] * 9) == math.inf  # 4.5 comparisons' worth are too few


def test_the_quantile_is_empirical_and_needs_enough_comparisons():
    errors = [math.log(1.0 + i / 10) for i in range(1, 10)]  # 9 comparisons: the 9th smallest at 90%
    assert math.isclose(conformal_factor(errors), 1.9)
    assert conformal_factor(errors[:8]) == math.inf  # 8 are too few for a 90% split-conformal bound


def test_a_kind_without_enough_comparisons_falls_back_to_all():
    found = comparisons(_group("a", [(1.0, 1.0, "x")] * 11)) + comparisons(_group("b", [(1.0, 1.0, "x"), (1, 2, "y")]))
    assert not kind_interval(found, "plan").pooled and kind_interval(found, "model").pooled
    assert "uncalibrated" not in kind_interval(found, "model").backing()


def test_held_out_sources_are_covered_at_the_stated_level():
    """The shipped fit's leave-one-source-out predictions: each source's comparisons against the interval
    the other sources give (pair_interval_coverage_loso in scripts/bench_accuracy.py)."""
    found = comparisons(points_from_fitted(load_fitted(), load_corpus(), "left_out_source"))
    covered, total = loso_coverage(found)
    assert total >= 25 and covered / total >= 0.88


def _row(samples_per_s: float, **values) -> TrialRow:
    figures = Figures(
        basis=Basis.PREDICTED,
        samples_per_s=samples_per_s,
        tokens_per_s=512 * samples_per_s,
        gpu_peak_bytes=1e10,
        step_s=1.0,
    )
    return TrialRow(
        0, Status.OK, "sampler", {"actor_zero_stage": 2, "enable_hybrid_engine": True, **values}, figures, None, 1.0
    )


def test_a_pick_that_changes_the_hybrid_engine_or_lora_is_uncalibrated():
    from dstune.search._pick import speedup

    for knobs in ({"enable_hybrid_engine": False}, {"actor_lora_dim": 128}):
        s = speedup(_row(12.0, **{"actor_lora_dim": 0, **knobs}), _row(10.0, actor_lora_dim=0), "ppo")
        assert s is not None and s.interval is None and "uncalibrated" in s.text()
        assert s.to_json()["interval"] is None and s.to_json()["backing"].startswith("uncalibrated")
        assert "uncalibrated" in s.versus("the baseline")


def test_which_changes_published_pairs_cover_is_read_per_step_from_the_corpus():
    """Issue 30: the same-model pairs are ds-autotuning-hf's GPT-2 SFT tables (ZeRO stage and micro-batch); RM
    trains with step 1's loop; no DPO or PPO pair holds the model fixed."""
    from dstune.calibration._pairs import covered_changes

    assert covered_changes("sft") == covered_changes("rm") == {"zero_stage", "per_device_train_batch_size"}
    assert covered_changes("dpo") == covered_changes("ppo") == frozenset()


def test_uncalibrated_is_decided_per_step():
    """A PPO pick that changes only ZeRO stages was given the SFT plan-change interval; no PPO pair backs it.
    An SFT pick that changes ZeRO stage and micro-batch keeps it; one that adds LoRA, or a DPO pick that changes
    ZeRO, does not."""
    from dstune.search._pick import speedup

    ppo = speedup(_row(12.0, actor_zero_stage=3), _row(10.0), "ppo")
    assert ppo is not None and ppo.interval is None
    assert ppo.backing == "uncalibrated: no published pair changes actor_zero_stage"
    base = {"zero_stage": 2, "per_device_train_batch_size": 8, "lora_dim": 0}
    sft = speedup(_row(12.0, **{**base, "zero_stage": 3, "per_device_train_batch_size": 16}), _row(10.0, **base), "sft")
    assert sft is not None and sft.interval is not None and "plan changes" in (sft.backing or "")
    lora = speedup(_row(12.0, **{**base, "lora_dim": 128}), _row(10.0, **base), "sft")
    assert (
        lora is not None
        and lora.interval is None
        and lora.backing == "uncalibrated: no published pair changes lora_dim"
    )
    dpo = speedup(_row(12.0, **{**base, "zero_stage": 3}), _row(10.0, **base), "dpo")
    assert dpo is not None and dpo.backing == "uncalibrated: no published DPO pair changes zero_stage"
