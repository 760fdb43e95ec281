"""Where a study lives, and how trials whose worker died are found and retried.

- `sqlite:///PATH` (the single-machine default), or any Optuna RDB URL: `postgresql://...` is the
  documented choice for several machines (`pip install dstune[postgres]` brings the driver).
  Optuna's heartbeat runs on these: a RUNNING trial whose worker stopped beating for the grace
  period is failed and its plan retried once (Optuna's RetryHeartbeatStaleTrialCallback), unless
  the worker died after writing the trial's result: that measurement is kept.
- `journal:PATH`: Optuna's journal file, for teams with a shared filesystem and no database
  server. Optuna's JournalStorage has no heartbeat, so dstune keeps one in the trial's user
  attributes (`heartbeat_at`, written by the worker) and fails stale trials the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import UserInputError

HEARTBEAT_S = 20
"""Seconds between a running trial's heartbeats."""
GRACE_FACTOR = 3
"""A trial is stale after this many missed heartbeats."""
JOURNAL_PREFIX = "journal:"


ROW_WRITTEN_ATTR = "status"
"""The user attribute a trial's result row is written under, last: a trial that has it holds a whole row."""


class RetryUnfinished:
    """Optuna's stale-trial retry (one re-enqueue), for trials whose worker died before writing its row.

    A worker killed between writing a trial's row and telling Optuna leaves a measured plan behind;
    queueing it again would only measure it twice (and the copy would inherit the row's attributes).
    """

    def __init__(self) -> None:
        import warnings

        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
        self.retried = 0

    def __call__(self, study: Any, trial: Any) -> None:
        if ROW_WRITTEN_ATTR in trial.user_attrs:
            return
        before = len(study.get_trials(deepcopy=False))
        self._retry(study, trial)
        self.retried += len(study.get_trials(deepcopy=False)) - before


def quiet_optuna_warnings() -> None:
    """dstune drives trials with ask/tell and beats itself (see `heartbeat`), which Optuna warns about;
    the heartbeat arguments are marked experimental. Neither is news to a dstune user."""
    import warnings

    import optuna

    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_storage(url: str | None, heartbeat_s: int = HEARTBEAT_S) -> Any:
    """An Optuna storage for `url` (None: in memory), with heartbeats where the backend has them."""
    import optuna

    if url is None:
        return None
    quiet_optuna_warnings()
    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend

        path = url[len(JOURNAL_PREFIX) :]
        if not path:
            raise UserInputError("--storage journal:PATH needs a file path")
        try:
            return optuna.storages.JournalStorage(JournalFileBackend(path))
        except OSError as error:
            raise UserInputError(f"--storage {url}: {error.strerror or error}") from None
    try:
        return _rdb(url, heartbeat_s)
    except ImportError as error:
        hint = " (pip install 'dstune[postgres]')" if url.startswith("postgres") else ""
        raise UserInputError(f"--storage {url}: no database driver: {error}{hint}") from None
    except Exception as error:  # noqa: BLE001 - any connection failure is about the user's URL
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserInputError(f"--storage {url}: cannot open: {first}") from None


def _rdb(url: str, heartbeat_s: int, attempts: int = 5) -> Any:
    """RDBStorage, retried: workers starting together race to create Optuna's tables, and the loser's
    CREATE fails once the winner's exists (PostgreSQL's unique violation on pg_type)."""
    import optuna

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=heartbeat_s,
                grace_period=heartbeat_s * GRACE_FACTOR,
                heartbeat_stale_trial_callback=RetryUnfinished(),
            )
        except ImportError:
            raise
        except Exception:  # noqa: BLE001 - retried a few times, then reported as the user's URL
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _native_heartbeat(storage: Any) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(storage)


@contextmanager
def heartbeat(study: Any, trial: Any, interval_s: float) -> Iterator[None]:
    """Beat for `trial` while the block runs (Optuna's record_heartbeat, or a user attribute)."""
    storage = study._storage
    native = _native_heartbeat(storage)
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                if native:
                    storage.record_heartbeat(trial._trial_id)
                else:
                    storage.set_trial_user_attr(trial._trial_id, "heartbeat_at", time.time())
            except Exception:  # noqa: BLE001 - a finished trial or a storage hiccup; the next beat retries
                pass
            if stop.wait(interval_s):
                return

    if native:  # the first beat before anything else, so a worker killed at once still leaves a trace
        storage.record_heartbeat(trial._trial_id)
    else:
        storage.set_trial_user_attr(trial._trial_id, "heartbeat_at", time.time())
    thread = threading.Thread(target=beat, name="dstune-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@dataclass(frozen=True)
class Stale:
    """What `fail_stale` did: trials failed for a dead worker, and how many of them were queued again."""

    failed: int = 0
    retried: int = 0

    def note(self) -> str:
        if not self.failed:
            return ""
        kept = self.failed - self.retried
        tail = f"; {kept} had written their result, which is kept" if kept else ""
        return f"{self.failed} trial(s) whose worker stopped were failed, {self.retried} queued once more{tail}"


def fail_stale(study: Any, interval_s: float) -> Stale:
    """Fail RUNNING trials whose worker stopped beating; queue again, once, those that wrote no row."""
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    if _native_heartbeat(storage):
        callback = storage.get_heartbeat_stale_trial_callback()
        retried_before = callback.retried if isinstance(callback, RetryUnfinished) else 0
        before = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
        optuna.storages.fail_stale_trials(study)
        failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))) - before
        retried = callback.retried - retried_before if isinstance(callback, RetryUnfinished) else 0
        return Stale(failed, retried)
    grace = interval_s * GRACE_FACTOR
    failed = 0
    retry = RetryUnfinished()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = trial.user_attrs.get("heartbeat_at")
        if beat is None and trial.datetime_start is not None:
            beat = trial.datetime_start.timestamp()
        if beat is None or time.time() - float(beat) < grace:
            continue
        try:
            storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        failed += 1
        retry(study, storage.get_trial(trial._trial_id))
    return Stale(failed, retry.retried)


def add_finished_trials(study: Any, trials: list[Any]) -> None:
    """Add finished trials in one transaction.

    Optuna's `add_trials` writes each param and attribute with its own queries (2.3 s for the 59
    trials of a simulated search into SQLite). The rows written here are the ones Optuna's RDB
    storage writes for the same trials, so Optuna, `dstune report` and optuna-dashboard read them
    as usual; other storages take Optuna's own path.
    """
    rdb = _rdb_backend(study._storage)
    if rdb is None or not trials:
        study.add_trials(trials)
        return
    import json

    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    for trial in trials:
        trial._validate()
    with _create_scoped_session(rdb.scoped_session) as session:
        models.StudyModel.find_or_raise_by_id(study._study_id, session, for_update=True)
        number = session.query(models.TrialModel).filter(models.TrialModel.study_id == study._study_id).count()
        for offset, trial in enumerate(trials):
            row = models.TrialModel(
                study_id=study._study_id,
                number=number + offset,
                state=trial.state,
                datetime_start=trial.datetime_start,
                datetime_complete=trial.datetime_complete,
            )
            row.values = [
                models.TrialValueModel(objective=i, value=v, value_type=t)
                for i, (v, t) in enumerate(map(models.TrialValueModel.value_to_stored_repr, trial.values or ()))
            ]
            row.params = [
                models.TrialParamModel(
                    param_name=name,
                    param_value=trial.distributions[name].to_internal_repr(value),
                    distribution_json=distribution_to_json(trial.distributions[name]),
                )
                for name, value in trial.params.items()
            ]
            row.user_attributes = [
                models.TrialUserAttributeModel(key=k, value_json=json.dumps(v)) for k, v in trial.user_attrs.items()
            ]
            row.system_attributes = [
                models.TrialSystemAttributeModel(key=k, value_json=json.dumps(v)) for k, v in trial.system_attrs.items()
            ]
            session.add(row)


def _rdb_backend(storage: Any) -> Any:
    import optuna

    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None
