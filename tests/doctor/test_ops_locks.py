"""Stale torch-extension locks: a dead builder's lock is found and cleared, a live builder's is left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dstune.doctor._locks import clear_stale_locks, find_locks, inspect_lock
from dstune.doctor._report import _lock_findings

HOLD = """
import sys, time
from torch.utils.file_baton import FileBaton
baton = FileBaton(sys.argv[1])
assert baton.try_acquire()
print("held", flush=True)
time.sleep(600)
"""


def _plant(root: Path, op: str = "deepspeed_shm_comm") -> Path:
    (root / op).mkdir(parents=True)
    lock = root / op / "lock"
    lock.touch()
    return lock


def test_planted_lock_without_holder_is_stale_and_cleared(tmp_path: Path) -> None:
    lock = _plant(tmp_path)
    assert [found.state for found in find_locks(str(tmp_path))] == ["stale"]
    removed, unproven = clear_stale_locks(str(tmp_path))
    assert removed == [str(lock)] and unproven == []
    assert not lock.exists()


def test_default_layout_with_tag_directory_is_found(tmp_path: Path) -> None:
    lock = _plant(tmp_path / "py312_cpu", "cpu_adam")
    assert [found.path for found in find_locks(str(tmp_path))] == [str(lock)]


def test_live_builder_lock_is_held_until_the_builder_dies(tmp_path: Path) -> None:
    (tmp_path / "cpu_adam").mkdir()
    lock = tmp_path / "cpu_adam" / "lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        state = inspect_lock(str(lock))
        assert state.state == "held" and holder.pid in state.holders
        assert clear_stale_locks(str(tmp_path)) == ([], [])
        assert lock.exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert inspect_lock(str(lock)).state == "stale"
    assert clear_stale_locks(str(tmp_path))[0] == [str(lock)]


def test_doctor_names_a_stale_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = _plant(tmp_path)
    os.utime(lock, (time.time() - 120, time.time() - 120))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    findings = _lock_findings()
    assert len(findings) == 1 and findings[0].level == "warn"
    assert str(lock) in findings[0].consequence and "stale" in findings[0].consequence
