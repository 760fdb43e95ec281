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

Here: `run_search`, which puts it together. The request and result records are in _request.py, the stored
study in _optuna_study.py, the ask-evaluate-tell loop in _loop.py and one trial's checks in _trial.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..catalog import target_transformers
from ..errors import UserInputError
from ..plan import Baseline, Context, plan_to_dict
from ..record import TrialRow
from ._backends import ReplayBackend
from ._grid import build_grid
from ._jobspace import resolve_job
from ._known import baseline_issues, baseline_notes, issue_notes, risks, rule_issues, without_broken
from ._loop import sample_trials
from ._optuna_study import ObservationsReader, open_study, record_setup
from ._pick import Picks, choose
from ._request import SearchInterrupted, SearchRequest, SearchResult
from ._rows import row_of
from ._sampler import distributions, finished
from ._samplers import SamplerInputs, make_sampler
from ._space import lora_defaults
from ._surrogate import Surrogate

logger = logging.getLogger(__name__)


def rank(rows: Sequence[TrialRow], cap_bytes: float) -> list[TrialRow]:
    """Ok trials under the memory cap, best first (see _pick.rank)."""
    from ._pick import rank as _rank

    return _rank(rows, cap_bytes)


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
    read = ObservationsReader(req)
    interrupted = False
    if req.backend.scores_grid:
        from ._simulate import record_simulation

        study = open_study(req, None)
        record_setup(study, req, space, baseline)
        evaluated = record_simulation(study, req, grid, baseline, distributions(grid))
    else:
        sampler = make_sampler(req.sampler, SamplerInputs(grid, surrogate, allowed, read, req.seed))
        study = open_study(req, sampler)
        record_setup(study, req, space, baseline)
        try:
            evaluated = sample_trials(
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
