"""Ops are built before the trial clock, and a stale lock left by a killed build never hangs the next trial."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from dstune.errors import UserInputError
from dstune.plan import to_deepspeed
from dstune.profile import run_trial
from dstune.profile._prebuild import ops_for, unblock_locks
from dstune.record import Status

from .conftest import cluster, model, plan

CACHED = Path.home() / ".cache" / "torch_extensions" / "py311_cpu" / "cpu_adam"


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


@pytest.mark.skipif(not (CACHED / "cpu_adam.so").exists(), reason="needs DeepSpeed's CPU Adam built once on this host")
def test_profile_finishes_after_a_killed_build_left_its_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extensions = tmp_path / "ext"
    shutil.copytree(CACHED, extensions / "cpu_adam", ignore=shutil.ignore_patterns("lock"))
    (extensions / "cpu_adam" / "lock").touch()
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(extensions))
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    started = time.time()
    result = run_trial(
        plan("sft", zero_stage=2, offload=True),
        model=model("tiny-opt"),
        critic_model=None,
        cluster=cluster(1),
        trial_dir=tmp_path / "trial",
        timeout_s=600,
        launcher="torchrun",
    )
    assert result.status is Status.OK, result.log_tail
    assert not (extensions / "cpu_adam" / "lock").exists()
    assert (tmp_path / "trial" / "ops_build.log").read_text().count("built CPUAdamBuilder") == 1
    assert result.wall_s is not None and result.wall_s < time.time() - started + 1
    assert os.path.exists(extensions / "cpu_adam" / "cpu_adam.so")
