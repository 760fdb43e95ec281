"""scripts/gpu_acceptance.sh on the CPU: its argument handling, and its row writer on a real profiled trial."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dstune.calibration._acceptance import SOURCE_KEY, acceptance_row, corpus_columns
from dstune.calibration._evidence import _row
from dstune.catalog import detect_local_gpus

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_acceptance.sh"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DS_ACCELERATOR"}
    env.update(PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=240)


def test_bad_flag_exits_2_with_one_line(tmp_path):
    done = _run("--trials", "all", "--out", str(tmp_path / "x"))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--trials" in done.stderr
    assert not (tmp_path / "x").exists()
    assert _run("--out").returncode == 2


@pytest.mark.skipif(bool(detect_local_gpus()), reason="this machine has a GPU")
def test_no_gpu_exits_2_with_one_line_and_writes_nothing(tmp_path):
    done = _run("--out", str(tmp_path / "x"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().count("\n") == 0 and "no CUDA GPU" in done.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.timeout(240)
def test_cpu_check_writes_a_corpus_row_with_the_trials_measured_figures(tmp_path):
    out = tmp_path / "acc"
    done = _run("--cpu-check", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    payload = json.loads((out / "trials" / "tiny-opt-sft-z0.json").read_text())
    assert payload["status"] == "ok" and payload["device"] == "cpu"
    with (out / "rows.csv").open(newline="") as handle:
        assert next(csv.reader(handle)) == corpus_columns()
    with (out / "rows.csv").open(newline="") as handle:
        (row,) = [_row(r) for r in csv.DictReader(handle)]
    assert row.source == SOURCE_KEY and row.gpu_type == "cpu" and not row.in_fit
    assert row.samples_per_s == pytest.approx(payload["throughput"]["samples_per_s"], rel=1e-5)
    assert dict(row.phase_s) == pytest.approx({(k,): v for k, v in payload["time"]["phases"].items()}, rel=1e-5)
    assert row.settings_dict["max_seq_len"] == 24 and row.settings_dict["per_device_train_batch_size"] == 2
    assert row.step == "sft" and row.model == "tiny-opt" and row.fits
    assert "not a GPU measurement" in row.basis and "deepspeed" in row.stated
    compared = list(csv.DictReader((out / "vs_predicted.csv").open()))
    assert {c["figure"] for c in compared} == {"samples_per_s", "step_s", "peak_alloc_gib"}
    assert all(c["predicted"] == "" for c in compared)  # a CPU trial is never set against a GPU prediction
    assert SOURCE_KEY in json.loads((out / "sources.json").read_text())
    # the same real result read as if a GPU had run it: named by NVML, compared with its prediction
    gpu_payload = dict(payload, device="cuda", memory=dict(payload["memory"], gpu_peak_bytes=3 * 2**30))
    machine = {"nvml_name": "NVIDIA H200", "count": 1, "memory_gib": 139.8, "catalog": "H200", "driver": "570.1"}
    gpu_row = _row(acceptance_row("t", gpu_payload, machine, "2026-12-05"))
    assert gpu_row.gpu_type == "H200" and gpu_row.in_fit and gpu_row.peak_alloc_gib == 3
    assert "NVIDIA H200" in gpu_row.stated and "570.1" in gpu_row.stated
    assert "predicted" in gpu_row.published
