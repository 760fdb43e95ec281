"""An op that fails to build ends only the trials that load it: `--json` still prints a result, and a
profile-backed search records those plans as errors (once built and failed, never rebuilt) and goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dstune.record import Status
from dstune.search._backends import ProfileBackend

from .conftest import cluster, model, plan

ROOT = Path(__file__).resolve().parents[2]
BROKEN = {"CXX": "/bin/false"}  # every C++ compile fails at once: a build failure in seconds


def test_json_prints_an_error_result_when_the_op_does_not_build(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DS_")}
    env.update(BROKEN, DS_ACCELERATOR="cpu", TORCH_EXTENSIONS_DIR=str(tmp_path / "ext"), PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "dstune", "profile", "--model", "tiny-opt", "--gpus", "1", "--step", "sft"]
    argv += ["--set", "dtype=bf16", "--set", "max_seq_len=16", "--set", "per_device_train_batch_size=2"]
    argv += ["--set", "zero_stage=2", "--set", "offload=true", "--warmup", "0", "--steps", "1"]
    argv += ["--timeout", "300", "--out", str(tmp_path / "trial"), "--json"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    payload = json.loads(done.stdout)  # before, stdout was empty and the exit code 2
    assert payload["status"] == "error" and "CPUAdamBuilder failed" in payload["error"], done.stderr[-2000:]
    assert json.loads((tmp_path / "trial" / "result.json").read_text())["status"] == "error"


@pytest.mark.usefixtures("cpu_accelerator")
def test_a_search_records_plans_needing_the_failed_op_and_does_not_rebuild_it(tmp_path: Path) -> None:
    backend = ProfileBackend(
        model=model("tiny-opt"),
        critic_model=None,
        cluster=cluster(1),
        trials_dir=tmp_path / "trials",
        warmup=0,
        steps=1,
        timeout_s=300,
        env={**BROKEN, "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext")},
    )
    first = backend.evaluate(plan("sft", zero_stage=2, offload=True))
    second = backend.evaluate(plan("sft", zero_stage=2, offload=True, max_seq_len=16))
    assert first.status is Status.ERROR and second.status is Status.ERROR
    assert "CPUAdamBuilder failed" in first.reason and second.reason == first.reason
    assert not (tmp_path / "trials" / "trial-0001" / "ops_build.log").exists()  # failed once, not rebuilt
