"""The search: an Optuna study over the candidate grid of one training job, seeded with the baseline.

Objectives: samples/s (maximise) and peak GPU memory (minimise) as a two-objective
study, so the stored study keeps the throughput/memory trade-off for the report's
Pareto plot. The production pick is not Optuna's Pareto set: see _pick.py.
With the cost model as the backend there is nothing to sample: the whole grid is
scored at once (_simulate.py) and its Pareto front and top plans are recorded.
Profile and replay studies ask Optuna's sampler for one plan at a time.
Trials that did not run cleanly are FAIL/PRUNED in Optuna and carry their status
and reason in user attributes; every trial stores its plan, job, key and figures
(predicted, and measured where it ran).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..catalog import Stack, target_transformers
from ..costmodel import DEFAULT_CONSTANTS, CostConstants
from ..errors import UserInputError
from ..plan import Baseline, Context, job_of, make_plan, plan_to_dict
from ..record import Figures, Status, TrialRow
from ._backends import Backend, ReplayBackend
from ._calibrate import Observation, Setup
from ._grid import Grid, build_grid, explain
from ._jobspace import resolve_job
from ._known import baseline_issues, baseline_notes, issue_notes, risks, rule_issues, without_broken
from ._pick import TIE_TOLERANCE, Picks, choose, fits
from ._rows import predicted_figures, row_of, store_row, tell_row
from ._sampler import PRUNE_BELOW, SurrogateSampler, distributions, finished
from ._samplers import SamplerInputs, make_sampler
from ._space import SearchSpace, lora_defaults, plan_key, shown_path
from ._storage import HEARTBEAT_S, ROW_WRITTEN_ATTR, Stale, fail_stale, heartbeat, make_storage
from ._surrogate import PRIOR_SD_TIME, FitRecord, Surrogate
from ._verdict import Verdict, verdict_of

logger = logging.getLogger(__name__)


class StopSearch(Exception):
    """Raised by a progress callback to end the search early (the benchmark's stop rule)."""


INTERRUPTED = "interrupted (Ctrl-C)"
"""The reason a trial ended by Ctrl-C carries."""


class SearchInterrupted(Exception):
    """Ctrl-C during a search: the running trial was ended and marked failed; `run_search` still
    returns the finished trials (with `interrupted` set) so the caller writes their files."""

    def __init__(self, evaluated: int):
        super().__init__(evaluated)
        self.evaluated = evaluated


@dataclass(frozen=True)
class SearchRequest:
    setup: Setup
    space: SearchSpace
    backend: Backend
    storage: str
    study_name: str
    trials: int = 40
    seed: int | None = None
    sampler: str = "dstune"
    single_objective: bool = False
    """Benchmark mode: one objective (samples/s, 0 when it does not fit) so TPE/GP compete fairly."""
    prior: CostConstants = DEFAULT_CONSTANTS
    """The cost model's constants before this study's own trials; its `headroom_fraction` sets the memory cap."""
    shipped: Sequence[Observation] = ()
    max_asks: int | None = None
    """Cap on Optuna asks (proposals off the grid or repeats are free); default 10 x trials."""
    grid: Grid | None = None
    """A grid already built from `space` for this setup (benchmarks reuse one across runs)."""
    global_batch: int | None = None
    """Prompts per PPO iteration (samples per step for SFT/RM); None: the baseline's."""
    tie_tolerance: float = TIE_TOLERANCE
    he_kernels: bool = True
    """Whether the Hybrid Engine's inference kernels run on this stack (cost-model assumption)."""
    interval_sd: float = PRIOR_SD_TIME
    """Spread of log(true / predicted) throughput behind the intervals of simulated figures."""
    interval_note: str = "uncalibrated prior (no published or measured rows for this GPU yet)"
    heartbeat_s: int = HEARTBEAT_S
    """Seconds between a running trial's heartbeats; a trial silent for 3 of them is failed and retried."""
    known_issues: str = "exclude"
    """mark: name the known-broken or risky combinations the picks hit (dstune.doctor); exclude: also
    drop plans that hit a 'broken' one from the candidates."""
    stack: Stack | None = None
    """The stack the plan will run on: its HE verdicts, stack rules and known issues apply (None: a replay
    table's own, dstune.search.read_table_stack, else the installed one, `local`). `stack.transformers_version`
    is the cost model's transformers input."""

    @property
    def headroom(self) -> float:
        return self.prior.headroom_fraction

    @property
    def cap_bytes(self) -> float:
        """The peak a pick may reach: the cost model's own cap, so estimate and search agree on what fits."""
        return self.prior.memory_cap_bytes(self.setup.cluster.gpu.memory_bytes)


@dataclass
class SearchResult:
    request: SearchRequest
    grid: Grid
    baseline: Baseline
    rows: list[TrialRow]
    new_trials: int
    picks: Picks
    history: list[FitRecord]
    notes: list[str]
    wall_s: float
    space: SearchSpace | None = None
    """The space as searched: fixed to the baseline's job unless widened."""
    interrupted: bool = False

    @property
    def pick(self) -> TrialRow | None:
        return self.picks.headline.pick

    @property
    def ranked(self) -> list[TrialRow]:
        return self.picks.headline.ranked

    @property
    def baseline_row(self) -> TrialRow | None:
        return next((r for r in self.rows if r.source == "baseline"), None)

    @property
    def verdict(self) -> Verdict:
        """The one line every output prints about the pick against the baseline."""
        stack = self.request.stack
        return verdict_of(self.picks, stack.label if stack is not None else None)


def rank(rows: Sequence[TrialRow], cap_bytes: float) -> list[TrialRow]:
    """Ok trials under the memory cap, best first (see _pick.rank)."""
    from ._pick import rank as _rank

    return _rank(rows, cap_bytes)


def open_study(req: SearchRequest, sampler: Any) -> Any:
    import optuna

    if optuna.logging.get_verbosity() < optuna.logging.WARNING:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions: list[Literal["maximize", "minimize"]] = (
        ["maximize"] if req.single_objective else ["maximize", "minimize"]
    )
    storage = make_storage(req.storage, req.heartbeat_s)
    try:
        return optuna.create_study(
            study_name=req.study_name, storage=storage, sampler=sampler, directions=directions, load_if_exists=True
        )
    except ValueError as error:
        if "direction" in str(error).lower():
            raise UserInputError(
                f"--storage {req.storage}: study {req.study_name!r} exists with other objectives"
            ) from None
        raise UserInputError(f"--storage {req.storage}: cannot open the study: {error}") from None
    except Exception as error:  # noqa: BLE001 - any storage failure (driver, network, path) is the user's URL
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserInputError(f"--storage {req.storage}: cannot open the study: {first}") from None


class _ObservationsReader:
    """study -> (observations for calibration, keys already tried, best feasible log samples/s).
    Finished trials never change, so each is parsed once; `rows` holds every parsed one."""

    def __init__(self, req: SearchRequest) -> None:
        self.req = req
        self.rows: dict[int, TrialRow | None] = {}
        self._own: list[Observation] = []
        self._seen: set[str] = set()
        self._best: list[float] = []

    def __call__(self, study: Any) -> tuple[list[Observation], set[str], float | None]:
        for trial in finished(study):
            if trial.number in self.rows:
                continue
            row = self.rows[trial.number] = row_of(trial)
            if row is None:  # failed without a record: its worker died (a retry is queued)
                continue
            self._seen.add(trial.user_attrs.get("key", ""))
            if row.source == "repeat":
                continue
            m = row.measured
            if row.status in (Status.OK, Status.OOM) and (m is not None or row.status == Status.OOM):
                self._own.append(
                    Observation(
                        values=row.values,
                        status=row.status,
                        samples_per_s=m.samples_per_s if m else None,
                        gpu_peak_bytes=m.gpu_peak_bytes if m else None,
                        setup=self.req.setup,
                    )
                )
            if fits(row, self.req.cap_bytes) and row.samples_per_s:
                self._best.append(math.log(row.samples_per_s))
        return list(self._own), self._seen, (max(self._best) if self._best else None)

    def running(self, study: Any) -> dict[str, float]:
        """Plans RUNNING in any worker, with their predicted samples/s (the constant liar's value)."""
        from optuna.trial import TrialState

        out = {}
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            key, predicted = trial.user_attrs.get("key"), Figures.from_json(trial.user_attrs.get("predicted"))
            if key:
                out[key] = predicted.samples_per_s if predicted else 0.0
        return out


def _record_setup(study: Any, req: SearchRequest, space: SearchSpace, baseline: Baseline) -> None:
    setup = req.setup
    for key, value in (
        ("model", setup.model.name),
        ("gpus", setup.cluster.world_size),
        ("gpu_type", setup.cluster.gpu.name),
        ("step", setup.step),
        ("backend", req.backend.name),
        ("space", shown_path(space.path)),
        ("job", job_of(setup.step, plan_to_dict(baseline.plan), setup.cluster.world_size).label()),
    ):
        study.set_user_attr(key, value)


def run_search(req: SearchRequest, progress: Callable[[TrialRow, list[TrialRow]], None] | None = None) -> SearchResult:
    """Continue (or start) the study: simulate scores the whole grid; other backends run `trials` new plans."""
    started = time.perf_counter()
    setup = req.setup
    world = setup.cluster.world_size
    ctx = Context(world_size=world, model=setup.model, critic_model=setup.critic_model, stack=req.stack)
    defaults = lora_defaults(setup.step, setup.model.family, setup.critic_model.family if setup.critic_model else None)
    space, baseline = resolve_job(
        req.space, setup.model, world, critic_model=setup.critic_model, global_batch=req.global_batch, stack=req.stack
    )
    grid = req.grid if req.grid is not None else build_grid(space, ctx, defaults)
    logger.info("baseline: %s", baseline.script)
    notes = [f"baseline adjusted: {a}" for a in baseline.adjustments]
    stack = _stack(req) if req.known_issues != "off" else None
    if req.known_issues == "exclude" and stack is not None:
        grid = without_broken(grid, setup.model, stack, notes)
    allowed = req.backend.allowed_rows(grid.columns)
    if isinstance(req.backend, ReplayBackend) and not allowed.any():
        raise UserInputError(f"replay table {req.backend.path} has no row of this space")
    surrogate = Surrogate(
        grid=grid,
        setup=setup,
        cap_bytes=req.cap_bytes,
        prior=req.prior,
        exact=req.backend.scores_grid,
        shipped=req.shipped,
        he_kernels=req.he_kernels,
        transformers_version=target_transformers(req.stack),
    )
    read = _ObservationsReader(req)
    interrupted = False
    if req.backend.scores_grid:
        from ._simulate import record_simulation

        study = open_study(req, None)
        _record_setup(study, req, space, baseline)
        evaluated = record_simulation(study, req, grid, baseline, distributions(grid))
    else:
        sampler = make_sampler(req.sampler, SamplerInputs(grid, surrogate, allowed, read, req.seed))
        study = open_study(req, sampler)
        _record_setup(study, req, space, baseline)
        try:
            evaluated = _sample_trials(
                study, sampler, req, grid, baseline, surrogate, ctx, defaults, read, notes, progress
            )
        except SearchInterrupted as stop:
            evaluated, interrupted = stop.evaluated, True
    rows = [r for r in (row_of(t) for t in finished(study)) if r]
    picks = _choose(req, rows, baseline, stack)
    notes += baseline_notes(picks, stack, req.known_issues)
    if stack is not None:
        notes += issue_notes(picks, setup.model, stack)
    return SearchResult(
        request=req,
        grid=grid,
        baseline=baseline,
        rows=rows,
        new_trials=evaluated,
        picks=picks,
        history=list(surrogate.history),
        notes=notes,
        wall_s=time.perf_counter() - started,
        space=space,
        interrupted=interrupted,
    )


def _choose(req: SearchRequest, rows: list[TrialRow], baseline: Baseline, stack: Any) -> Picks:
    """The picks over the study's rows, against the baseline as shipped and the issues it hits."""
    setup = req.setup
    base_row = next((r for r in rows if r.source == "baseline"), None)
    return choose(
        rows,
        base_row,
        plan_to_dict(baseline.plan),
        setup.step,
        setup.cluster.world_size,
        req.cap_bytes,
        req.tie_tolerance,
        baseline_issues=rule_issues(baseline) + baseline_issues(plan_to_dict(baseline.plan), setup.model, stack),
        keep_broken=req.known_issues == "mark",
        risks=risks(setup.model, stack),
    )


def _stack(req: SearchRequest) -> Any:
    """The target stack; without one, the installed stack as the doctor sees it (None if it cannot tell)."""
    if req.stack is not None:
        return req.stack
    recorded = getattr(req.backend, "stack", None)
    if recorded is not None:  # a replay table's rows ran on their own stack
        return recorded
    try:
        from ..doctor import current_stack

        return current_stack()
    except Exception:  # noqa: BLE001 - a search must not fail because the stack probe did
        logger.debug("stack probe failed; known issues not checked", exc_info=True)
        return None


def _sample_trials(
    study: Any,
    sampler: Any,
    req: SearchRequest,
    grid: Grid,
    baseline: Baseline,
    surrogate: Surrogate,
    ctx: Context,
    defaults: Mapping[str, Any],
    read: _ObservationsReader,
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
                    row, counted = _run_trial(trial, req, grid, choices, surrogate, ctx, defaults, read, study)
            except KeyboardInterrupt:
                _end_interrupted(study, trial)
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


def _end_interrupted(study: Any, trial: Any) -> None:
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


def _note_stale(stale: Stale, notes: list[str]) -> None:
    if stale.failed:
        notes.append(stale.note())


def _running_twin(study: Any, number: int, key: str) -> str | None:
    from optuna.trial import TrialState

    for other in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if other.number != number and other.user_attrs.get("key") == key:
            return f"trial {other.number}"
    return None


def _has_waiting(study: Any) -> bool:
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


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


def _repeat(p: _Proposal, read: _ObservationsReader, study: Any) -> _Outcome | None:
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
    p: _Proposal, study: Any, read: _ObservationsReader, predicted: Figures, p_fit: float
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
    record = req.backend.evaluate(make_plan(req.setup.step, p.values))  # Ctrl-C here: _end_interrupted
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


def _run_trial(
    trial: Any,
    req: SearchRequest,
    grid: Grid,
    choices: Mapping[str, Any],
    surrogate: Surrogate,
    ctx: Context,
    defaults: Mapping[str, Any],
    read: _ObservationsReader,
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
