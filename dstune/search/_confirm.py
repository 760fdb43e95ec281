"""After a profile search: measure the baseline and the pick again, alternately, so the speedup has an interval.

The search measured each plan once, at different times, and kept the best of many noisy
measurements. Re-running the two in rounds (baseline, pick, baseline, pick, ...) gives pairs that
share the machine's state of the moment; the speedup is then stated from the pairs
(dstune.search._measured). Each run is a trial of the study with source `confirm`, so a rerun of the
command adds rounds rather than repeating them, and trials.csv shows every run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..plan import make_plan
from ..record import Status, TrialRow
from ._measured import CONFIRM
from ._optuna_study import open_study
from ._request import SearchRequest, SearchResult
from ._rows import store_row, tell_row
from ._storage import heartbeat
from ._study import run_search
from ._trial import end_interrupted

DEFAULT_ROUNDS = 3
"""Pairs after a profile search: 3 pairs give a t-interval with 2 degrees of freedom (t = 2.92 at 90%)."""


def should_confirm(result: SearchResult, rounds: int) -> bool:
    """Only a measured pick that differs from a measured baseline has a speedup worth confirming."""
    head = result.picks.headline
    pick, base = head.pick, head.baseline
    return (
        rounds > 0
        and result.request.backend.measures
        and not result.interrupted
        and pick is not None
        and base is not None
        and base.status == Status.OK
        and pick.measured is not None
        and base.measured is not None
        and pick.values != base.values
    )


def confirm_pick(
    req: SearchRequest, result: SearchResult, rounds: int, say: Callable[[str], None] | None = None
) -> SearchResult:
    """Run `rounds` more baseline/pick pairs, then the study's result again with them (the speedup from
    the pairs). Ctrl-C ends the running trial and returns what finished, marked interrupted."""
    if not should_confirm(result, rounds):
        return result
    import optuna

    head = result.picks.headline
    assert head.pick is not None and head.baseline is not None  # should_confirm checked both
    study = open_study(req, optuna.samplers.RandomSampler(seed=req.seed))
    done = [r.details.get("round") for r in result.rows if r.source == CONFIRM]
    first = max([n for n in done if isinstance(n, int)], default=0) + 1
    runs = [
        (n, role, row)
        for n in range(first, first + rounds)
        for role, row in (("baseline", head.baseline), ("pick", head.pick))
    ]
    ran, interrupted = 0, False
    for number, role, row in runs:
        if say is not None:
            say(f"confirming the speedup: round {number - first + 1}/{rounds}, the {role} (trial {row.number}) again")
        trial = study.ask()
        try:
            with heartbeat(study, trial, req.heartbeat_s):
                _run(study, trial, req, row, role, number)
        except KeyboardInterrupt:
            end_interrupted(study, trial)
            interrupted = True
            break
        ran += 1
    again = run_search(dataclasses.replace(req, trials=0))
    again.notes[:0] = [n for n in result.notes if n not in again.notes]
    again.interrupted = interrupted
    again.new_trials = result.new_trials + ran
    return again


def _run(study: Any, trial: Any, req: SearchRequest, original: TrialRow, role: str, number: int) -> None:
    for name, value in (("source", CONFIRM), ("plan", original.values), ("job", original.job)):
        trial.set_user_attr(name, value)
    record = req.backend.evaluate(make_plan(req.setup.step, original.values))
    row = TrialRow(
        trial.number,
        record.status,
        CONFIRM,
        dict(original.values),
        original.predicted,
        record.measured,
        original.p_fit,
        reason=f"round {number}: the {role} (trial {original.number}) measured again",
        details={**record.details, "round": number, "role": role, "confirms": original.number},
        job=original.job,
    )
    store_row(trial, row, "")
    tell_row(study, trial, req, row)
