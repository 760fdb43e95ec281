"""Issue 30: Table 1 states no batch size and no HE TP size. Besides the headline reading (largest batch that fits
the card, over TP sizes up to a node) the corpus reproduces its rows under two other readings, which
scripts/bench_accuracy.py scores beside the headline so that no reading is chosen for its score."""

import pytest

from dstune.calibration._evidence import load_corpus
from dstune.calibration._reproduce import TABLE1_READINGS, choose, reproduce
from dstune.costmodel import DEFAULT_CONSTANTS

ROWS = {row.id: row for row in load_corpus()}


def test_the_readings_are_named():
    assert set(TABLE1_READINGS) == {"default", "script_tp", "headroom"}


@pytest.mark.parametrize("row_id", ["t1-8xa100-80g-30b", "t1-8xa100-40g-6.7b"])
def test_script_tp_reading_keeps_the_scripts_own_tp_size(row_id):
    row = ROWS[row_id]
    default, own = reproduce(row), reproduce(row, "script_tp")
    script = default.rungs[0][1][0]
    assert {p.inference_tp_size for p in own.plans} == {script.inference_tp_size}
    assert {(p.inference_tp_size, p.tp_gather_partition_size) for p in own.plans} < {
        (p.inference_tp_size, p.tp_gather_partition_size) for p in default.plans
    } or default.plans == own.plans
    assert "script_tp" in own.reading and own.fit_fraction == default.fit_fraction == 1.0


@pytest.mark.parametrize("row_id", ["t1-8xa100-40g-6.7b", "t1-1xa100-80g-1.3b"])
def test_headroom_reading_takes_the_largest_batch_within_the_tools_headroom(row_id):
    row = ROWS[row_id]
    default, headroom = choose(reproduce(row)), choose(reproduce(row, "headroom"))
    case = reproduce(row, "headroom")
    assert case.fit_fraction == 1.0 - DEFAULT_CONSTANTS.headroom_fraction
    assert headroom.gpu_peak_bytes <= case.fit_fraction * case.known_cluster.gpu.memory_bytes
    batch = "per_device_generation_batch_size"
    assert getattr(headroom.plan, batch) <= getattr(default.plan, batch)


def test_other_sources_read_the_same_under_every_reading():
    row = next(r for r in ROWS.values() if r.source == "ds-autotuning-hf")
    assert reproduce(row, "headroom") == reproduce(row) == reproduce(row, "script_tp")


def test_bench_accuracy_prints_every_reading_beside_the_headline():
    """The full mode's alternative readings, on a few Table 1 rows and the GPT-2 tables (1 evaluation per fit)."""
    import importlib.util
    from pathlib import Path

    from dstune.calibration._accuracy import evaluate

    path = Path(__file__).parents[2] / "scripts" / "bench_accuracy.py"
    spec = importlib.util.spec_from_file_location("bench_accuracy", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    keep = {"t1-8xa100-40g-6.7b", "t1-8xa100-40g-13b", "at-gpt2-z0", "at-gpt2-z1", "at-gpt2-hand"}

    def small(cases):
        return evaluate([c for c in cases if c.row.id in keep], loo_nfev=1, loso_nfev=1, full_nfev=1)

    lines = bench._alternative_readings(small, lambda message: None)
    for label in ("script_tp", "headroom"):
        assert any(line.startswith(f"reading_{label}: loo_geo_factor ") for line in lines), lines
        assert any(f"reading_{label}:" in line and "pair_interval_coverage_loso" in line for line in lines)
