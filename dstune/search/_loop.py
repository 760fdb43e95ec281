"""The ask-evaluate-tell loop of profile, replay and benchmark searches: the baseline first, then the sampler's
plans until `trials` new ones ran, failing dead workers' trials on the way."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..plan import Baseline, Context, plan_to_dict
from ._grid import Grid
from ._optuna_study import ObservationsReader
from ._request import SearchInterrupted, SearchRequest, StopSearch
from ._rows import row_of
from ._sampler import SurrogateSampler, distributions, finished
from ._storage import Stale, fail_stale, heartbeat
from ._surrogate import Surrogate
from ._trial import end_interrupted, run_trial


def sample_trials(
    study: Any,
    sampler: Any,
    req: SearchRequest,
    grid: Grid,
    baseline: Baseline,
    surrogate: Surrogate,
    ctx: Context,
    defaults: Mapping[str, Any],
    read: ObservationsReader,
    notes: list[str],
    progress: Callable | None,
) -> int:
    """Ask, evaluate, tell until `trials` new plans ran (profile, replay and the benchmark's samplers)."""
    from optuna.trial import TrialState

    _note_stale(fail_stale(study, req.heartbeat_s), notes)  # first: a dead worker's baseline is retried once
    existing = [row_of(t) for t in finished(study)]
    choices = distributions(grid)
    if not any(r and r.source == "baseline" for r in existing) and not any(
        t.user_attrs.get("source") == "baseline" for t in study.get_trials(states=(TrialState.WAITING,))
    ):
        base_values = plan_to_dict(baseline.plan)
        params = {n: base_values[n] for n, d in choices.items() if base_values[n] in d.choices}
        study.enqueue_trial(
            params if len(params) == len(choices) else {},
            user_attrs={"source": "baseline", "script": baseline.script, "plan": base_values},
        )
    evaluated = asks = 0
    max_asks = req.max_asks or max(req.trials * 10, 100)
    try:
        while evaluated < req.trials and asks < max_asks:
            _note_stale(fail_stale(study, req.heartbeat_s), notes)
            if isinstance(sampler, SurrogateSampler) and not _has_waiting(study):
                mask, _ = sampler.candidates(study)
                if not mask.any():
                    notes.append("stopped early: every remaining candidate is evaluated or predicted not to fit")
                    break
            asks += 1
            trial = study.ask()
            try:
                with heartbeat(study, trial, req.heartbeat_s):
                    row, counted = run_trial(trial, req, grid, choices, surrogate, ctx, defaults, read, study)
            except KeyboardInterrupt:
                end_interrupted(study, trial)
                raise
            evaluated += counted
            if progress is not None and row is not None:
                read(study)
                progress(row, [r for r in read.rows.values() if r])
    except StopSearch:
        pass
    except KeyboardInterrupt:
        notes.append("interrupted (Ctrl-C): the running trial was ended; files cover the finished trials")
        raise SearchInterrupted(evaluated) from None
    return evaluated


def _note_stale(stale: Stale, notes: list[str]) -> None:
    if stale.failed:
        notes.append(stale.note())


def _has_waiting(study: Any) -> bool:
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
