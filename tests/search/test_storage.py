"""Stale trials on a real journal file and a real SQLite database: which are queued again, which keep
their result, and the order a row is written in."""

from __future__ import annotations

import json
import time
from pathlib import Path

import optuna
import pytest

from dstune.record import Status, TrialRow
from dstune.search._rows import row_attrs, row_of, store_row
from dstune.search._storage import ROW_WRITTEN_ATTR, Stale, fail_stale, make_storage

HEARTBEAT_S = 1


def _storage(tmp_path: Path, kind: str) -> str:
    return f"journal:{tmp_path / 'study.journal'}" if kind == "journal" else f"sqlite:///{tmp_path}/study.db"


def _row(number: int) -> TrialRow:
    return TrialRow(number, Status.OK, "sampler", {"zero_stage": 2}, None, None, 0.9, reason="measured")


def _dead_worker_trial(study: optuna.Study, write_row: bool) -> optuna.trial.Trial:
    """A trial as a worker leaves it when it is killed: RUNNING, marked with its plan, maybe with its row."""
    trial = study.ask({"zero_stage": optuna.distributions.CategoricalDistribution([2, 3])})
    trial.set_user_attr("key", "zero_stage=2")
    if write_row:
        store_row(trial, _row(trial.number), "zero_stage=2")
    storage = study._storage
    if hasattr(storage, "record_heartbeat"):
        storage.record_heartbeat(trial._trial_id)
    else:
        trial.set_user_attr("heartbeat_at", time.time())
    return trial


def _after_grace() -> None:
    time.sleep(HEARTBEAT_S * 3 + 1.5)  # SQLite's now() counts whole seconds


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_stale_trial_without_its_row_is_failed_and_queued_once_more(tmp_path: Path, kind: str) -> None:
    study = optuna.create_study(storage=make_storage(_storage(tmp_path, kind), HEARTBEAT_S))
    dead = _dead_worker_trial(study, write_row=False)
    _after_grace()
    assert fail_stale(study, HEARTBEAT_S) == Stale(failed=1, retried=1)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs["key"] for t in waiting] == ["zero_stage=2"]
    assert ROW_WRITTEN_ATTR not in waiting[0].user_attrs
    assert study.get_trials()[dead.number].state == optuna.trial.TrialState.FAIL
    assert fail_stale(study, HEARTBEAT_S) == Stale(), "a failed trial is not failed twice"


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_stale_trial_that_wrote_its_row_keeps_it_and_is_not_run_again(tmp_path: Path, kind: str) -> None:
    study = optuna.create_study(storage=make_storage(_storage(tmp_path, kind), HEARTBEAT_S))
    dead = _dead_worker_trial(study, write_row=True)
    _after_grace()
    stale = fail_stale(study, HEARTBEAT_S)
    assert stale == Stale(failed=1, retried=0)
    assert "1 had written their result, which is kept" in stale.note()
    assert not study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    kept = row_of(study.get_trials()[dead.number])
    assert kept is not None and kept.status == Status.OK and kept.p_fit == 0.9


def test_a_row_is_written_status_last_so_a_half_written_row_is_no_row(tmp_path: Path) -> None:
    path = tmp_path / "study.journal"
    study = optuna.create_study(storage=make_storage(f"journal:{path}"))
    trial = study.ask()
    store_row(trial, _row(trial.number), "zero_stage=2")
    logs = [json.loads(line) for line in path.read_text().splitlines()]
    written = [log["user_attr"] for log in logs if "user_attr" in log]
    names = [next(iter(attr)) for attr in written]
    assert names[-1] == ROW_WRITTEN_ATTR
    assert sorted(names) == sorted(row_attrs(_row(trial.number), "zero_stage=2"))
    half = optuna.create_study(storage=make_storage(f"journal:{tmp_path / 'half.journal'}"))
    cut = half.ask()
    for attr in written[:-1]:
        cut.set_user_attr(*next(iter(attr.items())))
    assert row_of(half.get_trials()[0]) is None
