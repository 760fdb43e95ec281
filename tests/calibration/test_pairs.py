"""Ratio evidence: pairwise errors and rank agreement within a source's groups, and the corpus readings it uses."""

from __future__ import annotations

import math

from dstune.calibration._evidence import load_corpus
from dstune.calibration._pairs import Point, group_of, is_tie, pair_evidence, ratio_interval


def _points(published, predicted, group=("s", "A100", "8", "end_to_end")):
    return [Point(f"r{i}", group, a, b) for i, (a, b) in enumerate(zip(published, predicted))]


def test_a_constant_bias_cancels_in_every_ratio():
    ev = pair_evidence(_points([10.0, 20.0, 40.0], [30.0, 60.0, 120.0]))
    assert ev is not None and ev.pairs == 3
    assert math.isclose(ev.geo_factor, 1.0) and math.isclose(ev.interval_factor, 1.0)
    assert math.isclose(ev.kendall_tau, 1.0)


def test_a_wrong_order_shows_in_tau_and_widens_the_interval():
    ev = pair_evidence(_points([10.0, 20.0, 40.0], [40.0, 20.0, 10.0]))
    assert ev is not None and ev.kendall_tau < 0
    assert ev.worst_factor >= ev.geo_factor > 1.0
    low, high = ratio_interval(1.2, ev)
    assert is_tie((low, high))


def test_rows_of_different_groups_are_never_paired():
    a = _points([10.0], [10.0], ("s", "A100", "8", "end_to_end"))
    b = _points([99.0], [1.0], ("s", "A100", "8", "autotuner"))
    assert pair_evidence(a + b) is None


def test_autotuning_tables_pair_within_one_model_only():
    assert group_of("ds-autotuning-hf", "V100-32G", 16, "autotuner", "gpt2") != group_of(
        "ds-autotuning-hf", "V100-32G", 16, "autotuner", "gpt2-xl"
    )
    assert group_of("dschat-table1", "A100-80G", 8, "end_to_end", "opt-1.3b") == group_of(
        "dschat-table1", "A100-80G", 8, "end_to_end", "opt-13b"
    )


def test_corpus_readings():
    rows = {r.id: r for r in load_corpus()}
    assert {r.metric for r in rows.values()} == {"end_to_end", "autotuner"}
    assert rows["at-gpt2-z0"].metric == "autotuner" and rows["at-gpt2-hand"].metric == "end_to_end"
    assert dict(rows["log-step3-opt1.3b"].phase_s)[("generation",)] == 2.52
    assert all(not r.in_fit and r.settings_dict["dtype"] == "fp16" for i, r in rows.items() if i.startswith("az-"))
    assert not rows["at-gpt2-xl-auto"].in_fit
    assert rows["fig4-8xa100-40g-125m"].settings == ()


def test_a_speedup_whose_interval_includes_one_reads_as_no_clear_difference():
    from dstune.record import Basis
    from dstune.search import Speedup

    tie = Speedup(1.12, (0.8, 1.5), Basis.PREDICTED, "90% interval from 56 published pairs")
    assert tie.tie and tie.text().startswith("no clear difference, though it is faster (1.12x predicted")
    assert "56 published pairs" in tie.text()
    clear = Speedup(1.6, (1.2, 2.1), Basis.PREDICTED)
    assert not clear.tie and clear.text().startswith("1.60x")
    assert tie.to_json()["tie"] is True
