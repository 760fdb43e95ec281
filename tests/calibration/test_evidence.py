"""The evidence corpus: it loads, every row is cited and reproduces to valid plans, and the fit helps."""

import json
import math

import numpy as np
import pytest

from dstune import calibration
from dstune.calibration._evidence import EVIDENCE_DIR, corpus_version, load_corpus, load_sources
from dstune.calibration._fit import fit_time, generation_of
from dstune.calibration._reproduce import (
    MAX_PAIRS_PER_STEP,
    choose,
    evidence_model,
    he_variants,
    predict_chosen,
    reproduce,
)
from dstune.calibration._shipped import FITTED_FILE, calibration_for
from dstune.costmodel import DEFAULT_CONSTANTS
from dstune.plan import violations

ROWS = load_corpus()
CASES = {row.id: reproduce(row) for row in ROWS}


def test_corpus_has_enough_cited_rows():
    sources = load_sources()
    assert len(ROWS) >= 30
    assert len({row.source for row in ROWS}) >= 3
    assert len({row.id for row in ROWS}) == len(ROWS)
    for row in ROWS:
        assert row.source in sources, row.id
        assert row.cell and row.stated and row.assumed and row.published, row.id
        assert row.measured_samples_per_s or row.peak_alloc_gib or row.fits is not None, row.id


def test_deepspeed_chat_table1_cells_are_all_there():
    cells = [row for row in ROWS if row.source == "dschat-table1"]
    assert len(cells) == 23
    assert all(row.samples == 264_292 and row.epoch_time_s for row in cells)


def test_evidence_files_stay_out_of_the_trial_tables():
    assert all(EVIDENCE_DIR not in path.parents for path in calibration.tables())


@pytest.mark.parametrize("row_id", [row.id for row in ROWS])
def test_every_row_reproduces_to_plans_dstune_accepts(row_id):
    case = CASES[row_id]
    if case.skipped:
        assert "unknown model" in case.skipped
        return
    assert case.plans and case.reading
    from dstune.calibration._evidence import load_sources

    if load_sources()[case.row.source].reproduction.startswith("dschat_"):
        assert case.stack is not None and case.stack.name == "dschat-2023"
    for plan in case.plans:
        # every rule, stack rules included, on the stack the source ran (DeepSpeed 0.9.0 for DeepSpeed-Chat's)
        assert violations(plan, case.context) == []
        assert plan.step == case.row.step
    for key, value in case.row.settings:
        if len(case.plans) == 1:
            assert getattr(case.plans[0], key) == value, key


def test_table1_follows_the_benchmark_method():
    case = CASES["t1-8xa100-80g-6.7b"]
    assert case.rungs[0][0] == "script"
    script = case.rungs[0][1]
    assert all(p.actor_zero_stage == 3 and p.enable_hybrid_engine for p in script)
    for plan in case.plans:
        assert plan.per_device_generation_batch_size == plan.per_device_training_batch_size
        assert plan.per_device_generation_batch_size * case.row.gpus <= MAX_PAIRS_PER_STEP
        assert plan.ppo_epochs == plan.generation_batches == 1
    choice = choose(case)
    assert choice.fits and choice.plan in case.plans


def test_table1_tp_cells_run_on_their_stack_not_on_todays():
    """Table 1's HE tensor-parallel plans are valid through --stack dschat-2023 (the Stack mechanism, no special
    case), and the same plans break he_tp_cannot_shard on constraints/he.txt's DeepSpeed 0.19.8."""
    import dataclasses

    from dstune.catalog import named_stack

    tp = [(c, p) for c in CASES.values() if c.row.source == "dschat-table1" for p in c.plans if p.inference_tp_size > 1]
    assert tp
    for case, plan in tp[:20]:
        assert violations(plan, case.context) == []
        today = dataclasses.replace(case.context, stack=named_stack("he"))
        assert any(v.startswith("he_tp_cannot_shard") for v in violations(plan, today))


def test_table1_reads_the_hybrid_engine_knobs_as_batch_knobs():
    """OPT-175B on 64 GPUs: with the script's HE settings only batch 1 fits; DeepSpeed-Chat's own HE knobs
    (TP up to a node, smaller gather partitions) let a larger batch fit, and the method takes the largest."""
    case = CASES["t1-64xa100-80g-175b"]
    tps = {p.inference_tp_size for p in case.plans}
    assert max(tps) <= case.cluster.gpus_per_node
    assert any(p.tp_gather_partition_size == 1 for p in case.plans)
    choice = choose(case)
    assert choice.fits and choice.plan.per_device_generation_batch_size > 1


def test_he_variants_only_where_the_hybrid_engine_shards():
    z2 = CASES["t1-8xa100-80g-1.3b"].rungs[0][1][0]
    assert z2.actor_zero_stage == 2 and he_variants(z2, 8) == [{}]
    z3 = CASES["t1-8xa100-80g-6.7b"].rungs[0][1][0]
    variants = he_variants(z3, 8)
    assert variants[0] == {"inference_tp_size": z3.inference_tp_size}
    assert {v["inference_tp_size"] for v in variants} <= {1, 2, 4, 8}


def test_gpt2_stand_ins_have_gpt2_parameter_counts():
    published = {"gpt2": 124_439_808, "gpt2-medium": 354_823_168, "gpt2-large": 774_030_080, "gpt2-xl": 1_557_611_200}
    for name, count in published.items():
        assert evidence_model(name).num_params == pytest.approx(count, rel=0.005)


def _shipped():
    return json.loads(FITTED_FILE.read_text())


def test_shipped_fit_names_the_corpus_it_came_from():
    data = _shipped()
    assert data["corpus_version"] == corpus_version(), "corpus changed: rerun scripts/bench_accuracy.py --write"
    assert {"fit_geo_factor", "loo_geo_factor", "loo_worst_factor"} <= set(data["factors"])


def test_shipped_fit_beats_the_priors_on_held_out_rows():
    rows = [r for r in _shipped()["rows"] if r["in_fit"] and r["left_out"] and r["published_samples_per_s"]]
    assert len(rows) >= 30

    def error(which):
        return np.mean([abs(math.log(r[which]["samples_per_s"] / r["published_samples_per_s"])) for r in rows])

    assert error("left_out") < error("prior")


def test_a_fit_on_some_rows_improves_rows_it_never_saw():
    """Fit the time constants on the GPT-2 autotuning rows except GPT2-large; predict GPT2-large."""
    rows = [CASES[r.id] for r in ROWS if r.source == "ds-autotuning-hf"]
    train = [c for c in rows if "gpt2-large" not in c.row.id]
    held = [c for c in rows if "gpt2-large" in c.row.id]
    plans = [c.plans[0] for c in train]
    measured = np.array([c.row.measured_samples_per_s for c in train])
    params = fit_time(train, plans, measured, DEFAULT_CONSTANTS, generations=("volta",), max_nfev=15)
    published = np.array([c.row.measured_samples_per_s for c in held])
    before, _ = predict_chosen(held, [c.plans[0] for c in held], DEFAULT_CONSTANTS)
    after, _ = predict_chosen(held, [c.plans[0] for c in held], params.constants(DEFAULT_CONSTANTS, "volta"))
    assert np.mean(np.abs(np.log(after / published))) < np.mean(np.abs(np.log(before / published)))


def test_calibration_for_a_gpu_with_rows_and_one_without():
    a100 = calibration_for("A100-80G")
    assert a100.generation == "ampere" and not a100.fallback
    assert a100.constants.matmul_efficiency_max > 0 and a100.interval_factor > 1.0
    assert a100.backing.startswith(f"fitted on {a100.rows} published rows")
    h100 = calibration_for("H100-80G")
    assert h100.generation == "hopper" and h100.fallback and h100.fitted_generation == "ampere"
    assert h100.interval_factor > a100.interval_factor
    assert "no published row" in h100.backing
    assert generation_of("V100-32G") == "volta"
    assert calibration_for("V100-32G").fitted_generation == "volta"


def test_phase_times_name_phases_the_cost_model_has():
    from dstune.plan import step_strategy

    rows = [row for row in ROWS if row.phase_s]
    assert rows
    for row in rows:
        known = step_strategy(row.step).phases
        for phases, seconds in row.phase_s:
            assert set(phases) <= set(known) and seconds > 0, row.id


def test_a_step_without_published_rows_gets_the_no_rows_interval_and_says_so() -> None:
    ppo, dpo = calibration_for("A100-80G", step="ppo"), calibration_for("A100-80G", step="dpo")
    assert ppo.step_rows and ppo.interval_factor == calibration_for("A100-80G").interval_factor
    assert dpo.step_rows == 0 and dpo.interval_factor > ppo.interval_factor
    assert "no published dpo row" in dpo.backing and "no published" not in ppo.backing


def test_deepspeed_chat_logged_peaks_are_predicted_within_three_percent():
    """The three training logs' MaxMemAllocated (torch's max_memory_allocated) against the allocated bytes of
    the plan each log's command states, on the stack they ran: before issue 30's last two terms (one reduce
    bucket without overlap_comm, stage 0's gradients made as activations free) 1.044-1.066 of it."""
    logged = [row for row in ROWS if row.source == "dschat-training-logs"]
    assert len(logged) == 3 and all(row.peak_alloc_gib for row in logged)
    for row in logged:
        allocated = choose(CASES[row.id]).gpu_allocated_bytes / 2**30
        assert allocated / row.peak_alloc_gib == pytest.approx(1.0, abs=0.03), row.id
