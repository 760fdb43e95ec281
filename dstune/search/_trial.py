"""One asked trial through the checks that may settle it without a run (off the grid, not in the table, a repeat,
over the memory cap, running elsewhere), then the backend; and a trial Ctrl-C ended."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..plan import Context, job_of, make_plan
from ..record import Figures, Status, TrialRow
from ._grid import Grid, explain
from ._optuna_study import ObservationsReader
from ._request import INTERRUPTED, SearchRequest
from ._rows import predicted_figures, store_row, tell_row
from ._sampler import PRUNE_BELOW
from ._space import plan_key
from ._storage import ROW_WRITTEN_ATTR
from ._surrogate import Surrogate


def end_interrupted(study: Any, trial: Any) -> None:
    """End the trial Ctrl-C caught, wherever it landed (in the run, between marking the plan and
    running it, or while the row or Optuna's tell was written): a marked plan gets its interrupted
    row, and the trial is failed, so none stays RUNNING for the next worker to wait three beats on."""
    import optuna
    from optuna.trial import TrialState

    frozen = study._storage.get_trial(trial._trial_id)
    if frozen.state != TrialState.RUNNING:
        return
    attrs = frozen.user_attrs
    if ROW_WRITTEN_ATTR not in attrs and "plan" in attrs:
        row = TrialRow(
            trial.number,
            Status.ERROR,
            attrs.get("source", "sampler"),
            dict(attrs["plan"]),
            Figures.from_json(attrs.get("predicted")),
            None,
            attrs.get("p_fit"),
            reason=INTERRUPTED,
            job=attrs.get("job", ""),
        )
        store_row(trial, row, attrs.get("key", ""))
    try:
        study.tell(trial, state=TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
        pass  # told in the meantime


def _running_twin(study: Any, number: int, key: str) -> str | None:
    from optuna.trial import TrialState

    for other in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if other.number != number and other.user_attrs.get("key") == key:
            return f"trial {other.number}"
    return None


def _job(req: SearchRequest, values: Mapping[str, Any]) -> str:
    try:
        return job_of(req.setup.step, values, req.setup.cluster.world_size).label()
    except KeyError:
        return ""


@dataclass(frozen=True)
class _Proposal:
    """An asked trial's plan on its way through the checks that may settle it without a run."""

    number: int
    source: str
    values: dict[str, Any]
    job: str
    key: str


_Outcome = tuple[TrialRow, str]
"""A trial settled without a run: its row and the key it is stored under ('' keeps it out of `seen`)."""


def _baseline_values(trial: Any, choices: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(trial.user_attrs["plan"])
    if all(values.get(name) in dist.choices for name, dist in choices.items()):
        # the baseline is a point of the space: give it Optuna params too (GP/TPE learn from it)
        for name, dist in choices.items():
            trial.suggest_categorical(name, dist.choices)
    return values


def _off_grid(
    trial: Any, source: str, params: dict[str, Any], grid: Grid, ctx: Context, defaults: Mapping[str, Any]
) -> _Outcome:
    row = TrialRow(
        trial.number,
        Status.INFEASIBLE,
        source,
        dict(params),
        None,
        None,
        None,
        reason=explain(grid.space, ctx, params, defaults),
    )
    return row, ""


def _not_in_table(p: _Proposal, req: SearchRequest) -> _Outcome | None:
    if req.backend.allows(p.values):
        return None
    row = TrialRow(
        p.number,
        Status.INFEASIBLE,
        p.source,
        p.values,
        None,
        None,
        None,
        reason=f"no measurement of this plan in the {req.backend.name} table",
        job=p.job,
    )
    return row, p.key


def _repeat(p: _Proposal, read: ObservationsReader, study: Any) -> _Outcome | None:
    """A plan this study already ran: its figures again, free."""
    _, seen, _ = read(study)
    if p.key not in seen:
        return None
    previous = next(
        r for r in read.rows.values() if r is not None and r.source != "repeat" and plan_key(r.values) == p.key
    )
    row = TrialRow(
        p.number,
        previous.status,
        "repeat",
        p.values,
        previous.predicted,
        previous.measured,
        previous.p_fit,
        reason=f"repeat of trial {previous.number}: not run again",
        job=p.job,
    )
    return row, ""


def _over_cap(p: _Proposal, req: SearchRequest, predicted: Figures, p_fit: float) -> _Outcome | None:
    """A costly backend never runs a plan the model is confident will not fit."""
    if not (req.backend.costly and p_fit < PRUNE_BELOW):
        return None
    peak = predicted.gpu_peak_bytes
    assert peak is not None  # predicted_figures always sets it
    row = TrialRow(
        p.number,
        Status.PRUNED,
        p.source,
        p.values,
        predicted,
        None,
        p_fit,
        reason=f"predicted GPU peak {peak / 2**30:.1f} GiB over the "
        f"{req.cap_bytes / 2**30:.1f} GiB cap (P(fit) = {p_fit:.3f}); not run",
        job=p.job,
    )
    return row, p.key


def _mark_running(trial: Any, p: _Proposal, predicted: Figures, p_fit: float) -> None:
    """Other workers see the plan as running from here on."""
    for name, value in (
        ("key", p.key),
        ("plan", p.values),
        ("source", p.source),
        ("job", p.job),
        ("predicted", predicted.to_json()),
        ("p_fit", p_fit),
    ):
        trial.set_user_attr(name, value)


def _running_elsewhere(
    p: _Proposal, study: Any, read: ObservationsReader, predicted: Figures, p_fit: float
) -> _Outcome | None:
    """Another worker took the same plan: each checks after marking its own, so at most one of two
    racing workers runs it (both may step back; the plan is then proposed again)."""
    rival = _running_twin(study, p.number, p.key)
    if rival is None and p.key in read(study)[1]:
        rival = "a finished trial"
    if rival is None:
        return None
    row = TrialRow(
        p.number,
        Status.INFEASIBLE,
        "repeat",
        p.values,
        predicted,
        None,
        p_fit,
        reason=f"running or run in {rival} (another worker): not run twice",
        job=p.job,
    )
    return row, ""


def _evaluate(p: _Proposal, req: SearchRequest, predicted: Figures, p_fit: float) -> TrialRow:
    record = req.backend.evaluate(make_plan(req.setup.step, p.values))  # Ctrl-C here: end_interrupted
    return TrialRow(
        p.number,
        record.status,
        p.source,
        p.values,
        predicted,
        record.measured,
        p_fit,
        reason=record.reason,
        details=dict(record.details),
        job=p.job,
    )


def _settle(study: Any, trial: Any, req: SearchRequest, outcome: _Outcome) -> TrialRow:
    row, key = outcome
    store_row(trial, row, key)
    tell_row(study, trial, req, row)
    return row


def run_trial(
    trial: Any,
    req: SearchRequest,
    grid: Grid,
    choices: Mapping[str, Any],
    surrogate: Surrogate,
    ctx: Context,
    defaults: Mapping[str, Any],
    read: ObservationsReader,
    study: Any,
) -> tuple[TrialRow | None, int]:
    """Evaluate one asked trial; returns its row and 1 if the backend ran (0 for free outcomes)."""
    source = trial.user_attrs.get("source", "sampler")
    if source == "baseline":
        values = _baseline_values(trial, choices)
    else:
        params = {name: trial.suggest_categorical(name, dist.choices) for name, dist in choices.items()}
        index = grid.find_varied(params)
        if index is None:
            return _settle(study, trial, req, _off_grid(trial, source, params, grid, ctx, defaults)), 0
        values = grid.values(index)
    p = _Proposal(trial.number, source, values, _job(req, values), plan_key(values))
    outcome = _not_in_table(p, req) or _repeat(p, read, study)
    if outcome is not None:
        return _settle(study, trial, req, outcome), 0
    pred, table = surrogate.predict_values([values])
    p_fit = float(pred.p_fit[0])
    predicted = predicted_figures(pred, table, 0)
    outcome = _over_cap(p, req, predicted, p_fit)
    if outcome is None:
        _mark_running(trial, p, predicted, p_fit)
        outcome = _running_elsewhere(p, study, read, predicted, p_fit)
    if outcome is not None:
        return _settle(study, trial, req, outcome), 0
    return _settle(study, trial, req, (_evaluate(p, req, predicted, p_fit), p.key)), 1
