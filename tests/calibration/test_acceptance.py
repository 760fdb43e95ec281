"""scripts/gpu_acceptance.sh: its argument handling, and the whole flow rehearsed on the CPU from the
wheelhouse (tiny models, DS_ACCELERATOR=cpu), whose rows the corpus loader must read."""

import csv
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from dstune.acceptance._snapshot import ARCHIVE_FILE, SUMMARY_FILE
from dstune.calibration._acceptance import SOURCE_KEY, acceptance_row, corpus_columns, measured_vs_predicted
from dstune.calibration._evidence import _row
from dstune.catalog import detect_local_gpus

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_acceptance.sh"
WHEELHOUSE = ROOT / f".whl-cp{sys.version_info[0]}{sys.version_info[1]}"


def _run(*args: str, timeout: float = 240, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DS_ACCELERATOR", "OUT")}
    env.update(PYTHON=sys.executable, PYTHONPATH=str(ROOT), **extra)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_bad_flag_exits_2_with_one_line(tmp_path):
    done = _run("--trials", "all", "--out", str(tmp_path / "x"))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--trials" in done.stderr
    assert not (tmp_path / "x").exists()
    assert _run("--out").returncode == 2
    assert _run().returncode == 2  # neither --out nor $OUT


@pytest.mark.skipif(bool(detect_local_gpus()), reason="this machine has a GPU")
def test_no_gpu_exits_2_with_one_line_and_writes_nothing(tmp_path):
    done = _run("--out", str(tmp_path / "x"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().count("\n") == 0 and "no CUDA GPU" in done.stderr
    assert not (tmp_path / "x").exists()


def _archive(out: Path) -> dict[str, bytes]:
    with tarfile.open(out / ARCHIVE_FILE) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


@pytest.mark.slow
@pytest.mark.timeout(2600)
@pytest.mark.skipif(
    not WHEELHOUSE.is_dir(),
    reason=f"no {WHEELHOUSE.name}: scripts/make_wheelhouse.sh --python-version X.Y --dest {WHEELHOUSE.name}",
)
def test_rehearsal_installs_offline_runs_the_flow_and_returns_two_files_with_corpus_rows(tmp_path):
    out = tmp_path / "out"
    # PIP_INDEX_URL points nowhere: the install step must not reach a registry (it passes --no-index). The
    # rehearsal's own limit (2400 s) is for a shared 2-core CPU; test_deadline checks the cut-off itself.
    done = _run("--rehearse", "--out", str(out), timeout=2500, PIP_INDEX_URL="http://127.0.0.1:9/simple")
    files = [p for p in out.rglob("*")]
    assert sorted(p.name for p in files) == [ARCHIVE_FILE, SUMMARY_FILE], done.stdout + done.stderr
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["finished"] and summary["mode"] == "rehearse", done.stdout + done.stderr
    stages = {stage["name"]: stage for stage in summary["stages"]}
    assert stages["versions"]["status"] == "ok" and stages["all-reduce"]["status"] == "ok"
    members = _archive(out)
    imported = json.loads(members["versions.json"])
    assert imported["transformers"]["version"] == "4.48.3"  # the wheelhouse's, over the venv's newer one
    assert imported["huggingface_hub"]["version"].startswith("0.") and imported["tokenizers"]["version"] < "0.22"
    assert "dstune-site" in imported["transformers"]["file"] and str(ROOT) in imported["dstune"]["file"]
    assert stages["trial tiny-opt-sft-z0"]["status"] == "ok", stages
    payload = json.loads(members["trials/tiny-opt-sft-z0.json"])
    assert payload["status"] == "ok" and payload["device"] == "cpu"
    assert set(payload["memory"]["phase_peak_bytes"]) == {"forward", "backward", "step"}
    assert payload["skipped_steps"] == {"engine": 0}
    text = members["rows.csv"].decode()
    assert next(csv.reader(io.StringIO(text))) == corpus_columns()
    rows = {r.id: r for r in (_row(r) for r in csv.DictReader(io.StringIO(text)))}
    (row,) = [r for r in rows.values() if r.model == "tiny-opt" and r.step == "sft"]
    assert row.source == SOURCE_KEY and row.gpu_type == "cpu" and not row.in_fit
    assert row.samples_per_s == pytest.approx(payload["throughput"]["samples_per_s"], rel=1e-5)
    assert row.settings_dict["max_seq_len"] == 24 and row.fits
    assert "not a GPU measurement" in row.basis and "transformers 4.48.3" in row.stated
    compared = list(csv.DictReader(io.StringIO(members["vs_predicted.csv"].decode())))
    assert all(c["predicted"] == "" for c in compared)  # a CPU trial is never set against a GPU prediction
    assert SOURCE_KEY in json.loads(members["sources.json"])
    ppo = summary["stages"][-1]
    assert ppo["name"] == "trial tiny-opt-ppo-he-true" and ppo["status"] == "ok", ppo
    ppo_payload = json.loads(members["trials/tiny-opt-ppo-he-true.json"])
    assert ppo_payload["skipped_steps"] == {"actor": 0, "critic": 0}  # the engines that train, not ref/reward
    he_row = next(r for r in rows.values() if r.step == "ppo")
    assert "he_kernels=0" in he_row.stated and "HE not active" in he_row.stated  # the CPU fallback, said

    # the same real result read as if an H200 had run it: named by NVML, compared like for like, kept out of the fit
    memory = dict(payload["memory"], gpu_peak_bytes=3 * 2**30, device_peak_bytes=5 * 2**30)
    gpu_payload = dict(payload, device="cuda", memory=memory)
    machine = {"nvml_name": "NVIDIA H200", "count": 1, "memory_gib": 139.8, "catalog": "H200", "driver": "570.1"}
    gpu_row = _row(acceptance_row("t", gpu_payload, machine, "2026-12-05"))
    assert gpu_row.gpu_type == "H200" and not gpu_row.in_fit and gpu_row.peak_alloc_gib == 3
    assert "NVIDIA H200" in gpu_row.stated and "570.1" in gpu_row.stated and "predicted" in gpu_row.published
    figures = measured_vs_predicted(gpu_payload)
    predicted_device = payload["predicted"]["memory"]["gpu_peak_bytes"] / 2**30
    assert figures["device_peak_gib"] == pytest.approx((5, predicted_device))
    alloc_measured, alloc_predicted = figures["peak_alloc_gib"]
    assert alloc_measured == 3 and 0 < alloc_predicted < predicted_device - 0.9  # no context, no overhead
    assert figures["phase_s:forward"][1] == payload["predicted"]["time"]["phases"]["forward"]
