"""Ops are built before the trial clock, and a stale lock left by a killed build never hangs the next trial."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dstune.errors import UserInputError
from dstune.plan import to_deepspeed
from dstune.profile._prebuild import ops_for, unblock_locks

from .conftest import plan

ROOT = Path(__file__).resolve().parents[2]
EXTENSIONS = Path.home() / ".cache" / "torch_extensions"


def test_offload_loads_cpu_adam_and_cpu_ranks_load_shm_comm() -> None:
    offload = to_deepspeed(plan("sft", zero_stage=2, offload=True), 2)
    assert ops_for(offload, device="cpu", ranks_per_node=2) == ["CPUAdamBuilder", "ShareMemCommBuilder"]
    plain = to_deepspeed(plan("sft", zero_stage=2), 1)
    assert ops_for(plain, device="cpu", ranks_per_node=1) == []
    assert ops_for(plain, device="cuda", ranks_per_node=1) == ["FusedAdamBuilder"]


def test_lock_that_cannot_be_checked_stops_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = tmp_path / "cpu_adam" / "lock"
    lock.parent.mkdir()
    lock.touch()
    monkeypatch.setattr("dstune.doctor._locks._holders", lambda path, owner: ((), False))
    with pytest.raises(UserInputError, match=str(lock)) as error:
        unblock_locks(str(tmp_path))
    assert "\n" not in str(error.value)


def _cached_cpu_adam() -> Path | None:
    """This host's built CPU Adam, if any (torch's default extensions cache): copying it spares a compile."""
    return next((p.parent for p in sorted(EXTENSIONS.glob("*/cpu_adam/cpu_adam.so"))), None)


@pytest.mark.timeout(1200)
def test_dstune_profile_finishes_after_a_killed_build_left_its_lock(tmp_path: Path) -> None:
    """`dstune profile` with a stale lock planted where a killed build left it: the op is (re)built before the
    trial clock with a line on stderr, the lock is gone, and the trial runs; without the fix it waits forever."""
    extensions = tmp_path / "ext"
    cached = _cached_cpu_adam()
    if cached is not None:
        shutil.copytree(cached, extensions / "cpu_adam", ignore=shutil.ignore_patterns("lock"))
    else:
        (extensions / "cpu_adam").mkdir(parents=True)  # no build here yet: the prebuild compiles it (minutes)
    (extensions / "cpu_adam" / "lock").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DS_")}
    env.update(DS_ACCELERATOR="cpu", TORCH_EXTENSIONS_DIR=str(extensions), PYTHONPATH=str(ROOT))
    tiny = ["--set", "dtype=bf16", "--set", "max_seq_len=16", "--set", "per_device_train_batch_size=2"]
    argv = [sys.executable, "-m", "dstune", "profile", "--model", "tiny-opt", "--gpus", "1", "--step", "sft", *tiny]
    argv += ["--set", "zero_stage=2", "--set", "offload=true", "--warmup", "0", "--steps", "1"]
    argv += ["--launcher", "torchrun", "--timeout", "300", "--out", str(tmp_path / "trial"), "--json"]
    started = time.time()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1100)
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(done.stdout)
    assert payload["status"] == "ok"
    assert "built DeepSpeed ops CPUAdamBuilder" in done.stderr
    assert not (extensions / "cpu_adam" / "lock").exists()
    assert (tmp_path / "trial" / "ops_build.log").read_text().count("built CPUAdamBuilder") == 1
    assert payload["time"]["wall_s"] < time.time() - started
    assert (extensions / "cpu_adam" / "cpu_adam.so").exists()
