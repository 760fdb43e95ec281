"""Optuna's parameter importance for a study, or a sentence saying why there is none.

A report must render for any study, so every failure here becomes a note.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

MIN_COMPLETED = 8


class Importance(NamedTuple):
    """(knob, importance) pairs, largest first, summing to 1; `note` says what was computed or why not.

    PED-ANOVA rather than Optuna's default fANOVA: it needs no scikit-learn and is deterministic."""

    params: tuple[tuple[str, float], ...]
    note: str
    memory: tuple[tuple[str, float], ...] = ()
    """Knob -> share of peak GPU memory's variance, where computed (a simulated study's whole grid)."""


def _target(directions: list) -> tuple[int, Callable[[Any], float]]:
    """The throughput objective (the first one Optuna maximises, else the first), as a
    lower-is-better target: PED-ANOVA ranks trials by low target values."""
    import optuna

    index = next((i for i, d in enumerate(directions) if d == optuna.study.StudyDirection.MAXIMIZE), 0)
    sign = -1.0 if directions[index] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return index, lambda trial: sign * trial.values[index]


def _sqlite_file(storage: str | None) -> Path | None:
    prefix = "sqlite:///"
    if storage and storage.startswith(prefix) and Path(storage[len(prefix) :]).is_file():
        return Path(storage[len(prefix) :])
    return None


def _load(db: Path, study_name: str | None, storage: str | None) -> tuple[Any, str | None]:
    """(the Optuna study, None) or (None, why it cannot be read)."""
    if not db.is_file():
        db = _sqlite_file(storage) or db
    if not db.is_file():
        return None, f"no {db.name} in the study directory: parameter importance unavailable"
    if not study_name:
        return None, "plan.json names no Optuna study: parameter importance unavailable"
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return optuna.load_study(study_name=study_name, storage=f"sqlite:///{db}"), None
    except Exception as error:  # noqa: BLE001 - reported, not raised
        return None, f"parameter importance unavailable ({type(error).__name__})"


def grid_importance(db: Path, study_name: str | None, storage: str | None = None) -> Importance:
    """A simulated study's exact main effects over its whole scored grid (dstune.search._importance), which the
    search stored in the study; a study simulated before that says how to get them."""
    from ..search._importance import USER_ATTR

    study, why = _load(db, study_name, storage)
    found = study.user_attrs.get(USER_ATTR) if study is not None else None
    if not isinstance(found, dict) or not found.get("throughput"):
        return Importance((), why or "no grid importance stored in this study: rerun the same dstune search")
    pairs = lambda key: tuple((str(k), float(v)) for k, v in (found.get(key) or {}).items())  # noqa: E731
    note = (
        f"exact over all {found.get('candidates', '?'):,} scored candidates: each knob's share of the variance of "
        "log predicted samples/s (and of log peak GPU memory) that its value alone explains (first-order main "
        "effects). Shares add up to more than 1 where the grid ties knobs together (a fixed batch ties the "
        "micro-batch to the accumulation steps) and to less where knobs interact. Not fANOVA: every candidate is "
        "scored, so the split is computed directly, with no forest fitted and no sampling noise"
    )
    return Importance(pairs("throughput"), note, pairs("memory"))


def param_importance(db: Path, study_name: str | None, storage: str | None = None) -> Importance:
    """From `db` (the directory's study.db), else from plan.json's storage if that is an existing
    SQLite file; other storages (a database server) are not contacted by a report."""
    if not db.is_file():
        db = _sqlite_file(storage) or db
    if not db.is_file():
        return Importance((), f"no {db.name} in the study directory: parameter importance unavailable")
    if not study_name:
        return Importance((), "plan.json names no Optuna study: parameter importance unavailable")
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{db}")
        completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if len(completed) < MIN_COMPLETED:
            return Importance(
                (),
                f"only {len(completed)} completed trial(s) in {db.name}; parameter importance "
                f"needs at least {MIN_COMPLETED}",
            )
        index, target = _target(study.directions)
        with warnings.catch_warnings():  # PED-ANOVA warns that it minimises the target: we negated it
            warnings.simplefilter("ignore")
            scores = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), target=target
            )
    except Exception as error:  # noqa: BLE001 - any storage or evaluator failure is reported, not raised
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return Importance((), f"parameter importance unavailable ({type(error).__name__}: {first})")
    objective = f"objective {index} (throughput)" if len(study.directions) > 1 else "the objective"
    note = (
        f"Optuna PED-ANOVA importance of each knob for reaching the best 10% of {objective} "
        f"over {len(completed)} completed trials (normalised to sum to 1)"
    )
    return Importance(tuple((str(k), float(v)) for k, v in scores.items()), note)
