"""The search loop: an Optuna study over the candidate grid, seeded with the baseline, one backend.

Objectives: samples/s (maximise) and peak GPU memory (minimise) as a two-objective
study, so the stored study keeps the whole throughput/memory trade-off for the
report's Pareto plot. The production pick is not Optuna's Pareto set: it is the
fastest ok trial whose peak fits under the cap (GPU memory less --headroom).
Trials that did not run cleanly (oom, timeout, error, crashed, pruned,
infeasible) are FAIL/PRUNED in Optuna and carry their status and reason in user
attributes; every trial stores its full plan, key, predicted and measured figures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..costmodel import DEFAULT_CONSTANTS, CostConstants
from ..errors import UserInputError
from ..plan import Context, make_plan
from ._backends import Backend
from ._baseline import Baseline, baseline_plan
from ._calibrate import Observation, Setup
from ._grid import Grid, build_grid, explain
from ._records import Figures
from ._sampler import PRUNE_BELOW, SurrogateSampler, distributions, finished
from ._space import SearchSpace, lora_defaults, plan_key
from ._surrogate import FitRecord, Surrogate

SAMPLERS = ("dstune", "tpe", "gp", "random", "grid", "autotuner")


class StopSearch(Exception):
    """Raised by a progress callback to end the search early (the benchmark's stop rule)."""


@dataclass(frozen=True)
class SearchRequest:
    setup: Setup
    space: SearchSpace
    backend: Backend
    storage: str
    study_name: str
    trials: int = 40
    seed: int | None = None
    headroom: float = 0.10
    sampler: str = "dstune"
    single_objective: bool = False
    """Benchmark mode: one objective (samples/s, 0 when it does not fit) so TPE/GP compete fairly."""
    prior: CostConstants = DEFAULT_CONSTANTS
    shipped: Sequence[Observation] = ()
    max_asks: int | None = None
    """Cap on Optuna asks (proposals off the grid or repeats are free); default 10 x trials."""
    grid: Grid | None = None
    """A grid already built from `space` for this setup (benchmarks reuse one across runs)."""

    @property
    def cap_bytes(self) -> float:
        return self.setup.cluster.gpu.memory_bytes * (1.0 - self.headroom)


@dataclass
class TrialRow:
    number: int
    status: str
    source: str
    values: dict[str, Any]
    predicted: Figures | None
    measured: Figures | None
    p_fit: float | None
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def fits(self) -> bool:
        return self.status == "ok"


@dataclass
class SearchResult:
    request: SearchRequest
    grid: Grid
    baseline: Baseline
    rows: list[TrialRow]
    new_trials: int
    pick: TrialRow | None
    ranked: list[TrialRow]
    history: list[FitRecord]
    notes: list[str]
    wall_s: float

    @property
    def baseline_row(self) -> TrialRow | None:
        return next((r for r in self.rows if r.source == "baseline"), None)


def memory_of(row: TrialRow) -> float | None:
    """Measured peak where the backend measured one (CPU runs do not), else the prediction."""
    for figures in (row.measured, row.predicted):
        if figures is not None and figures.gpu_peak_bytes:
            return figures.gpu_peak_bytes
    return None


def rank(rows: Sequence[TrialRow], cap_bytes: float) -> list[TrialRow]:
    """Ok trials under the memory cap, fastest first: the pick and its runners-up."""
    fit = [r for r in rows if r.status == "ok" and r.measured and (memory_of(r) or 0.0) <= cap_bytes]
    return sorted(fit, key=lambda r: (-r.measured.samples_per_s, r.number))


def row_of(trial: Any) -> TrialRow | None:
    attrs = trial.user_attrs
    if "status" not in attrs:
        return None
    return TrialRow(number=trial.number, status=attrs["status"], source=attrs.get("source", "sampler"),
                    values=dict(attrs.get("plan", {})), predicted=Figures.from_json(attrs.get("predicted")),
                    measured=Figures.from_json(attrs.get("measured")), p_fit=attrs.get("p_fit"),
                    reason=attrs.get("reason", ""), details=dict(attrs.get("details", {})))


def _make_sampler(req: SearchRequest, grid: Grid, surrogate: Surrogate, allowed: np.ndarray,
                  observations: Callable) -> Any:
    import optuna

    name = req.sampler
    if name == "dstune":
        return SurrogateSampler(grid, surrogate, observations, allowed=allowed, seed=req.seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=req.seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=req.seed, warn_independent_sampling=False)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=req.seed)
    if name == "grid":
        space = {n: list(d.choices) for n, d in distributions(grid).items()}
        return optuna.samplers.GridSampler(space, seed=req.seed)
    if name == "autotuner":
        from ._strategies import AutotunerSampler

        return AutotunerSampler(grid, observations, allowed=allowed, seed=req.seed)
    raise UserInputError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


def open_study(req: SearchRequest, sampler: Any) -> Any:
    import optuna

    if optuna.logging.get_verbosity() < optuna.logging.WARNING:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["maximize"] if req.single_objective else ["maximize", "minimize"]
    try:
        return optuna.create_study(study_name=req.study_name, storage=req.storage, sampler=sampler,
                                   directions=directions, load_if_exists=True)
    except ValueError as error:
        if "direction" in str(error).lower():
            raise UserInputError(f"--storage {req.storage}: study {req.study_name!r} exists with other objectives") from None
        raise UserInputError(f"--storage {req.storage}: cannot open the study: {error}") from None
    except Exception as error:  # noqa: BLE001 - any storage failure (driver, network, path) is the user's URL
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserInputError(f"--storage {req.storage}: cannot open the study: {first}") from None


def _observations_reader(req: SearchRequest) -> Callable:
    """study -> (observations for calibration, keys already tried, best feasible log samples/s).
    Finished trials never change, so each is parsed once."""
    cap = req.cap_bytes
    parsed: dict[int, Any] = {}
    own: list[Observation] = []
    seen: set[str] = set()
    best: list[float] = []

    def read(study: Any) -> tuple[list[Observation], set[str], float | None]:
        for trial in finished(study):
            if trial.number in parsed:
                continue
            row = parsed[trial.number] = row_of(trial)
            if row is None:
                continue
            seen.add(trial.user_attrs.get("key", ""))
            if row.source == "repeat":
                continue
            if row.status in ("ok", "oom"):
                m = row.measured
                own.append(Observation(values=row.values, status=row.status,
                                       samples_per_s=m.samples_per_s if m else None,
                                       gpu_peak_bytes=m.gpu_peak_bytes if m else None, setup=req.setup))
            if row.status == "ok" and row.measured and (memory_of(row) or 0.0) <= cap:
                best.append(math.log(row.measured.samples_per_s))
        return list(own), seen, (max(best) if best else None)

    read.rows = parsed  # type: ignore[attr-defined]
    return read


def run_search(req: SearchRequest, progress: Callable[[TrialRow, list[TrialRow]], None] | None = None) -> SearchResult:
    """Continue (or start) the study until `trials` new evaluations are done or no candidate is left."""
    from optuna.trial import TrialState

    started = time.perf_counter()
    setup = req.setup
    ctx = Context(world_size=setup.cluster.world_size, model=setup.model, critic_model=setup.critic_model)
    defaults = lora_defaults(setup.step, setup.model.family, setup.critic_model.family if setup.critic_model else None)
    grid = req.grid if req.grid is not None else build_grid(req.space, ctx, defaults)
    baseline = baseline_plan(setup.step, setup.model, setup.cluster.world_size, critic_model=setup.critic_model,
                             workload=req.space.workload)
    notes = [f"baseline: {baseline.script}"] + [f"baseline adjusted: {a}" for a in baseline.adjustments]
    allowed = req.backend.allowed_rows(grid.columns)
    if req.backend.name == "replay":
        if not allowed.any():
            raise UserInputError(f"replay table {getattr(req.backend, 'path', '')} has no row of this space")
    surrogate = Surrogate(grid=grid, setup=setup, cap_bytes=req.cap_bytes, prior=req.prior,
                          exact=req.backend.name == "simulate", shipped=req.shipped)
    read = _observations_reader(req)
    sampler = _make_sampler(req, grid, surrogate, allowed, read)
    study = open_study(req, sampler)
    for key, value in (("model", setup.model.name), ("gpus", setup.cluster.world_size),
                       ("gpu_type", setup.cluster.gpu.name), ("step", setup.step), ("backend", req.backend.name),
                       ("space", req.space.path)):
        study.set_user_attr(key, value)
    existing = [row_of(t) for t in finished(study)]
    choices = distributions(grid)
    if not any(r and r.source == "baseline" for r in existing) and not any(
            t.user_attrs.get("source") == "baseline" for t in study.get_trials(states=(TrialState.WAITING,))):
        base_values = _plan_dict(baseline.plan)
        params = {n: base_values[n] for n, d in choices.items() if base_values[n] in d.choices}
        study.enqueue_trial(params if len(params) == len(choices) else {},
                            user_attrs={"source": "baseline", "script": baseline.script, "plan": base_values})
    evaluated = asks = 0
    max_asks = req.max_asks or max(req.trials * 10, 100)
    try:
        while evaluated < req.trials and asks < max_asks:
            if isinstance(sampler, SurrogateSampler) and not _has_waiting(study):
                mask, _ = sampler.candidates(study)
                if not mask.any():
                    notes.append("stopped early: every remaining candidate is evaluated or predicted not to fit")
                    break
            asks += 1
            trial = study.ask()
            row, counted = _run_trial(trial, req, grid, choices, surrogate, ctx, defaults, read, study)
            evaluated += counted
            if progress is not None and row is not None:
                read(study)
                progress(row, [r for r in read.rows.values() if r])
    except StopSearch:
        pass
    rows = [r for r in (row_of(t) for t in finished(study)) if r]
    ranked = rank(rows, req.cap_bytes)
    return SearchResult(request=req, grid=grid, baseline=baseline, rows=rows, new_trials=evaluated,
                        pick=ranked[0] if ranked else None, ranked=ranked, history=list(surrogate.history),
                        notes=notes, wall_s=time.perf_counter() - started)


def _has_waiting(study: Any) -> bool:
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _plan_dict(plan: Any) -> dict[str, Any]:
    from ..plan import plan_to_dict

    return plan_to_dict(plan)


def _tell(study: Any, trial: Any, req: SearchRequest, row: TrialRow) -> None:
    from optuna.trial import TrialState

    if row.status == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    elif req.single_objective:
        fits = row.status == "ok" and (memory_of(row) or 0.0) <= req.cap_bytes
        study.tell(trial, [row.measured.samples_per_s if fits else 0.0])
    elif row.status == "ok":
        study.tell(trial, [row.measured.samples_per_s, memory_of(row) or 0.0])
    else:
        study.tell(trial, state=TrialState.FAIL)


def _store(trial: Any, row: TrialRow, key: str) -> None:
    attrs = {"status": row.status, "source": row.source, "plan": row.values, "key": key, "reason": row.reason,
             "predicted": row.predicted.to_json() if row.predicted else None,
             "measured": row.measured.to_json() if row.measured else None, "p_fit": row.p_fit,
             "details": _jsonable(row.details)}
    for name, value in attrs.items():
        trial.set_user_attr(name, value)


def _jsonable(details: Mapping[str, Any]) -> dict[str, Any]:
    import json

    out = {}
    for k, v in details.items():
        try:
            json.dumps(v)
            out[k] = v
        except TypeError:
            out[k] = str(v)
    return out


def _run_trial(trial: Any, req: SearchRequest, grid: Grid, choices: Mapping[str, Any], surrogate: Surrogate,
               ctx: Context, defaults: Mapping[str, Any], read: Callable, study: Any) -> tuple[TrialRow | None, int]:
    """Evaluate one asked trial; returns its row and 1 if the backend ran (0 for free outcomes)."""
    source = trial.user_attrs.get("source", "sampler")
    if source == "baseline":
        values = dict(trial.user_attrs["plan"])
        if all(values.get(name) in dist.choices for name, dist in choices.items()):
            # the baseline is a point of the space: give it Optuna params too (GP/TPE learn from it)
            for name, dist in choices.items():
                trial.suggest_categorical(name, dist.choices)
    else:
        params = {name: trial.suggest_categorical(name, dist.choices) for name, dist in choices.items()}
        index = grid.find_varied(params)
        if index is None:
            row = TrialRow(trial.number, "infeasible", source, dict(params), None, None, None,
                           reason=explain(req.space, ctx, params, defaults))
            _store(trial, row, "")
            _tell(study, trial, req, row)
            return row, 0
        values = grid.values(index)
    if not req.backend.allows(values):
        row = TrialRow(trial.number, "infeasible", source, values, None, None, None,
                       reason=f"no measurement of this plan in the {req.backend.name} table")
        _store(trial, row, plan_key(values))
        _tell(study, trial, req, row)
        return row, 0
    key = plan_key(values)
    _, seen, _ = read(study)
    if key in seen:
        previous = next(r for r in read.rows.values() if r is not None and r.source != "repeat"
                        and plan_key(r.values) == key)
        row = TrialRow(trial.number, previous.status, "repeat", values, previous.predicted, previous.measured,
                       previous.p_fit, reason=f"repeat of trial {previous.number}: not run again")
        _store(trial, row, "")
        _tell(study, trial, req, row)
        return row, 0
    pred, table = surrogate.predict_values([values])
    p_fit = float(pred.p_fit[0])
    predicted = Figures(samples_per_s=float(np.exp(pred.log_sps[0])),
                        tokens_per_s=float(np.exp(pred.log_sps[0]) * table["tokens_per_s"][0] / table["samples_per_s"][0]),
                        gpu_peak_bytes=float(np.exp(pred.log_mem[0])), step_s=float(table["step_s"][0]),
                        phases={k[5:]: float(v[0]) for k, v in table.items() if k.startswith("time_")},
                        mfu=float(table["mfu"][0]))
    if req.backend.costly and p_fit < PRUNE_BELOW:
        row = TrialRow(trial.number, "pruned", source, values, predicted, None, p_fit,
                       reason=f"predicted GPU peak {predicted.gpu_peak_bytes / 2**30:.1f} GiB over the "
                              f"{req.cap_bytes / 2**30:.1f} GiB cap (P(fit) = {p_fit:.3f}); not run")
        _store(trial, row, key)
        _tell(study, trial, req, row)
        return row, 0
    record = req.backend.evaluate(make_plan(req.setup.step, values))
    row = TrialRow(trial.number, record.status, source, values, predicted, record.measured, p_fit,
                   reason=record.reason, details=dict(record.details))
    _store(trial, row, key)
    _tell(study, trial, req, row)
    return row, 1
