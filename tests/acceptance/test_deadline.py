"""The acceptance run's one deadline: stage budgets, and a run whose op builds never finish in time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import psutil
import pytest

from dstune.acceptance._deadline import Deadline
from dstune.acceptance._snapshot import ARCHIVE_FILE, SUMMARY_FILE
from dstune.acceptance._stages import BUILD_DELAY_ENV

ROOT = Path(__file__).resolve().parents[2]


def test_every_budget_is_what_is_left_of_one_clock() -> None:
    deadline = Deadline(started=1000.0, limit_s=540.0, reserve_s=15.0)
    assert deadline.left(now=1030.0) == 495.0  # the 30 s before the driver (the wheel install) count
    assert deadline.budget(300.0, now=1030.0) == 300.0
    assert deadline.budget(300.0, now=1400.0) == 125.0
    assert deadline.budget(300.0, now=1600.0) == 0.0
    assert deadline.fits(75.0, now=1400.0) and not deadline.fits(75.0, now=1460.0)


def _started_by(tag: str) -> list[psutil.Process]:
    """Processes still alive whose environment carries this test's tag (its builds, nvcc or ninja)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("DSTUNE_TEST_TAG") == tag:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_builds_slower_than_the_run_are_ended_whole_and_the_run_still_snapshots_in_time(tmp_path: Path) -> None:
    out = tmp_path / "out"
    limit_s, spent_before_s = 90.0, 30.0
    started = time.time() - spent_before_s  # as if the wheel install had taken 30 s
    env = {**os.environ, "PYTHONPATH": str(ROOT), BUILD_DELAY_ENV: "600", "DSTUNE_TEST_TAG": str(tmp_path)}
    argv = [sys.executable, "-m", "dstune.acceptance", "--rehearse", "--out", str(out)]
    argv += ["--started-at", f"{started:.3f}", "--limit-s", f"{limit_s:.0f}"]
    argv += ["--ops", "CPUAdamBuilder,ShareMemCommBuilder"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240)
    elapsed = time.time() - started
    assert elapsed < limit_s, f"ran {elapsed:.0f} s past a {limit_s:.0f} s limit\n{done.stdout}{done.stderr}"
    assert done.returncode == 1, done.stdout + done.stderr  # stages were cut: said by the exit code
    assert sorted(p.name for p in out.iterdir()) == [ARCHIVE_FILE, SUMMARY_FILE]
    summary = json.loads((out / SUMMARY_FILE).read_text())
    stages = {stage["name"]: stage["status"] for stage in summary["stages"]}
    assert {stages["build CPUAdamBuilder"], stages["build ShareMemCommBuilder"]} <= {"timeout", "skipped"}
    trials = [stage for stage in summary["stages"] if stage["name"].startswith("trial ")]
    assert trials and all(t["status"] == "skipped" for t in trials)
    assert all("ShareMemCommBuilder" in t["detail"] for t in trials)  # not rebuilt inside each trial's budget
    assert summary["finished"] and summary["elapsed_s"] < limit_s
    assert summary["imported"]["deepspeed"]["version"] and "imported: python" in done.stdout
    assert not _started_by(str(tmp_path))  # the sleeping builds' whole groups were ended, not just waited on
    with tarfile.open(out / ARCHIVE_FILE) as tar:
        names = set(tar.getnames())
    assert "versions.json" in names and any(n.startswith("build_") for n in names)
