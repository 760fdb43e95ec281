"""Several `dstune search` workers on one study (PostgreSQL or a journal file), and kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from dstune.calibration import DATA_DIR
from dstune.record import Status
from dstune.search._rows import row_of
from dstune.search._storage import make_storage

TABLE = DATA_DIR / "tiny-opt-ppo-2xcpu.csv"
TABLE_SPACE = Path(__file__).resolve().parents[2] / "search_spaces" / "tiny-ppo-table.yaml"
"""The space the table was recorded in (the default tiny space keeps one job, which the table barely holds)."""
STUDY = "tiny-opt-2xcpu-ppo-replay"  # the table was measured on the CPU


def _worker(out: Path, storage: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dstune",
        "search",
        "--model",
        "tiny-opt",
        "--gpus",
        "2",
        "--gpu-type",
        "A100-80G",
        "--backend",
        "replay",
        "--table",
        str(TABLE),
        "--space",
        str(TABLE_SPACE),
        "--storage",
        storage,
        "--out",
        str(out),
        "--json",
        *extra,
    ]


def _ran(storage: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=STUDY, storage=make_storage(storage))
    return [
        t
        for t in study.get_trials()
        if t.user_attrs.get("status") in ("ok", "oom") and t.user_attrs.get("source") != "repeat"
    ]


def _two_workers(tmp_path: Path, storage: str) -> None:
    procs = [
        subprocess.Popen(
            _worker(tmp_path / f"w{i}", storage, "--trials", "6", "--seed", str(i), "--replay-time-scale", "1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert json.loads(out)["study"]["name"] == STUDY
    ran = _ran(storage)
    keys = [t.user_attrs["key"] for t in ran]
    assert len(keys) == len(set(keys)), "a plan ran twice"
    assert len(ran) == 12, "every worker ran its 6 plans, none lost"


def test_two_workers_share_a_postgresql_study(tmp_path: Path, postgres_url: str) -> None:
    _two_workers(tmp_path, postgres_url)


def test_two_workers_share_a_journal_file(tmp_path: Path) -> None:
    _two_workers(tmp_path, f"journal:{tmp_path / 'study.journal'}")


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_kill_9_keeps_finished_trials_and_retries_the_stale_one(tmp_path: Path, kind: str) -> None:
    storage = f"sqlite:///{tmp_path}/study.db" if kind == "sqlite" else f"journal:{tmp_path / 'study.journal'}"
    proc = subprocess.Popen(
        _worker(tmp_path / "a", storage, "--trials", "5", "--heartbeat", "1", "--replay-time-scale", "12"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    running = None
    while time.time() < deadline and running is None:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name=STUDY, storage=make_storage(storage))
        except KeyError:
            continue
        done = [t for t in study.get_trials() if t.user_attrs.get("status")]
        busy = [t for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)) if t.user_attrs.get("key")]
        if done and busy:
            running = busy[0]
    assert running is not None, "the worker never got to a second trial"
    finished_before = {t.number for t in done}
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(4)  # three missed heartbeats of 1 s
    again = subprocess.run(
        _worker(tmp_path / "b", storage, "--trials", "1", "--heartbeat", "1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    study = optuna.load_study(study_name=STUDY, storage=make_storage(storage))
    trials = {t.number: t for t in study.get_trials()}
    assert finished_before <= {n for n, t in trials.items() if t.user_attrs.get("status")}
    stale = trials[running.number]
    assert stale.state == optuna.trial.TrialState.FAIL
    again_run = [
        t
        for t in trials.values()
        if t.number > running.number and t.user_attrs.get("key") == running.user_attrs["key"] and row_of(t)
    ]
    kept = row_of(stale)
    if kept is not None:  # killed between writing the result and telling Optuna: the measurement stands
        assert kept.measured is not None or kept.status != Status.OK, "a half-written row was read as a result"
        assert not again_run, "a plan whose result was written ran twice"
    else:
        assert again_run and again_run[0].user_attrs["source"] != "repeat", "the stale plan was not run again"


@pytest.mark.slow
def test_kill_9_of_a_profile_search_leaves_no_trial_process(tmp_path: Path) -> None:
    import psutil

    out = tmp_path / "p"
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dstune",
            "search",
            "--model",
            "tiny-opt",
            "--gpus",
            "2",
            "--backend",
            "profile",
            "--trials",
            "1",
            "--steps",
            "50",
            "--out",
            str(out),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    trial_dir = out / "trials" / "trial-0000"
    deadline = time.time() + 180
    ranks: list[psutil.Process] = []
    while time.time() < deadline and len(ranks) < 2:
        time.sleep(0.5)
        ranks = [
            p
            for p in psutil.process_iter(["cmdline"])
            if str(trial_dir) in " ".join(p.info["cmdline"] or [])
            and "dstune.profile.worker" in " ".join(p.info["cmdline"] or [])
        ]
    assert len(ranks) >= 2, "the trial's ranks never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(ranks, timeout=30)
    assert not alive, f"trial processes outlived the search: {[p.pid for p in alive]}"


def test_workers_on_one_machine_share_the_study(tmp_path: Path) -> None:
    out = tmp_path / "w"
    done = subprocess.run(
        _worker(out, f"sqlite:///{tmp_path}/study.db", "--trials", "6", "--workers", "2", "--replay-time-scale", "1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert any("2 workers" in note for note in plan["notes"])
    ran = _ran(f"sqlite:///{tmp_path}/study.db")
    keys = [t.user_attrs["key"] for t in ran]
    assert len(keys) == len(set(keys)) == 6
    assert (out / "worker-1" / "plan.json").is_file() and plan["study"]["trials"] >= 6


def test_ctrl_c_ends_the_running_trial_and_writes_what_finished(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/study.db"
    out = tmp_path / "c"
    proc = subprocess.Popen(
        # mark: the first finished trial, the baseline, stays pickable where the stack's HE verdict is broken
        _worker(out, storage, "--trials", "5", "--replay-time-scale", "30", "--known-issues", "mark"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name=STUDY, storage=make_storage(storage))
        except KeyError:
            continue
        running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        if any(t.user_attrs.get("status") for t in study.get_trials()) and any(
            "key" in t.user_attrs and "status" not in t.user_attrs for t in running
        ):
            break  # a trial is finished and the next one is being run (its row not yet written)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    plan = json.loads((out / "plan.json").read_text())
    assert plan["trial"] is not None and any("interrupted" in n for n in plan["notes"])
    rows = (out / "trials.csv").read_text()
    assert "interrupted (Ctrl-C)" in rows
    study = optuna.load_study(study_name=STUDY, storage=make_storage(storage))
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
