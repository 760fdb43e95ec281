"""The simulate backend done exactly: score every candidate at once, record what matters.

With the cost model as the judge there is nothing to sample. The whole grid is scored
in one vectorised pass; the study records the baseline, the exact Pareto front of
throughput and peak memory, the top plans of every job class under the pick rule, and
the baseline's own settings for each other job (what a LoRA or larger-batch pick is
compared with). The figures are predictions (basis `predicted`) with an interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..catalog import target_transformers
from ..costmodel import estimate_table
from ..plan import Baseline, job_of, plan_to_dict, step_strategy
from ..record import Basis, Figures, Status, TrialRow, interval_from_log
from ._grid import Grid
from ._pick import grid_classes
from ._rows import row_attrs, row_of, tell_values
from ._space import as_python, plan_key

TOP_PER_CLASS = 10


def _score(req: Any, cols: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    s = req.setup
    return estimate_table(
        s.step,
        cols,
        s.model,
        s.cluster,
        critic_model=s.critic_model or s.model,
        constants=req.prior,
        he_kernels=req.he_kernels,
        transformers_version=target_transformers(req.stack),
    )


def pareto_front(sps: np.ndarray, mem: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Indices (into the full arrays) of the candidates no other candidate beats on both objectives."""
    idx = np.flatnonzero(candidates)
    order = idx[np.lexsort((mem[idx], -sps[idx]))]
    running = np.minimum.accumulate(mem[order])
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = mem[order][1:] < running[:-1]
    return order[keep]


def _top(sps: np.ndarray, mem: np.ndarray, changes: np.ndarray, rows: np.ndarray, tolerance: float) -> np.ndarray:
    """The pick rule (see _pick.rank) over a set of row indices, vectorised: best first, TOP_PER_CLASS of them."""
    if not len(rows):
        return rows
    best = sps[rows].max()
    tier = sps[rows] >= best * (1.0 - tolerance)
    top = rows[tier][np.lexsort((rows[tier], changes[rows[tier]], mem[rows[tier]]))]
    rest = rows[~tier][np.lexsort((rows[~tier], mem[rows[~tier]], -sps[rows[~tier]]))]
    return np.concatenate([top, rest])[:TOP_PER_CLASS]


def _figures(table: Mapping[str, np.ndarray], i: int, sd: float) -> Figures:
    sps = float(table["samples_per_s"][i])
    return Figures(
        basis=Basis.PREDICTED,
        samples_per_s=sps,
        tokens_per_s=float(table["tokens_per_s"][i]),
        gpu_peak_bytes=float(table["gpu_peak_bytes"][i]),
        step_s=float(table["step_s"][i]),
        phases={k[5:]: float(v[i]) for k, v in table.items() if k.startswith("time_")},
        mfu=float(table["mfu"][i]),
        samples_per_s_interval=interval_from_log(math.log(sps), sd),
    )


def _row(req: Any, values: dict[str, Any], table: Mapping[str, np.ndarray], i: int, source: str) -> TrialRow:
    cap = req.cap_bytes
    reasons = []
    if table["gpu_peak_bytes"][i] > cap:
        reasons.append(f"predicted GPU peak {table['gpu_peak_bytes'][i] / 2**30:.1f} GiB > cap {cap / 2**30:.1f} GiB")
    if not table["fits_host"][i]:
        reasons.append(
            f"predicted host peak {table['host_peak_bytes'][i] / 2**30:.0f} GiB per node > "
            f"{req.setup.cluster.host_memory_per_node_bytes / 2**30:.0f} GiB"
        )
    world = req.setup.cluster.world_size
    return TrialRow(
        number=-1,
        status=Status.INFEASIBLE if reasons else Status.OK,
        source=source,
        values=values,
        predicted=_figures(table, i, req.interval_sd),
        measured=None,
        p_fit=None,
        reason="; ".join(reasons),
        details={"device": f"simulated {req.setup.cluster.gpu.name}"},
        job=job_of(req.setup.step, values, world).label(),
    )


def _selection(req: Any, grid: Grid, table: Mapping[str, np.ndarray], baseline_values: Mapping[str, Any]) -> list[int]:
    """Grid rows worth recording: the Pareto front, each job class's top plans, and the fastest plans
    predicted not to fit (so a report shows what the memory cap costs)."""
    cols = grid.columns
    step, world = req.setup.step, req.setup.cluster.world_size
    sps, mem = table["samples_per_s"], table["gpu_peak_bytes"]
    feasible = (mem <= req.cap_bytes) & table["fits_host"].astype(bool) & np.isfinite(sps)
    changes = np.zeros(len(grid), dtype=np.int64)
    for name, column in cols.items():
        changes += column != baseline_values.get(name)
    codes, labels = grid_classes(step, cols, world, baseline_values)
    chosen = list(pareto_front(sps, mem, feasible))
    over = np.flatnonzero(~feasible & np.isfinite(sps))
    chosen += list(over[np.argsort(-sps[over], kind="stable")][:TOP_PER_CLASS])  # faster plans that do not fit
    for code in range(len(labels)):
        chosen += list(_top(sps, mem, changes, np.flatnonzero(feasible & (codes == code)), req.tie_tolerance))
    return list(dict.fromkeys(int(i) for i in chosen))


def record_simulation(study: Any, req: Any, grid: Grid, baseline: Baseline, choices: Mapping[str, Any]) -> int:
    """Score the grid, add the selected plans (and baselines) to the study; returns how many were added."""
    import optuna

    from ._importance import USER_ATTR, grid_importance
    from ._storage import add_finished_trials

    base_values = plan_to_dict(baseline.plan)
    table = _score(req, grid.columns)
    study.set_user_attr(USER_ATTR, grid_importance(grid.columns, table))  # the report's importance, exact
    rows = [_row(req, grid.values(i), table, i, "simulate") for i in _selection(req, grid, table, base_values)]
    base_table = _score(req, {k: np.array([v]) for k, v in base_values.items()})
    rows.insert(0, _row(req, base_values, base_table, 0, "baseline"))
    rows += _job_baselines(req, rows, base_values)
    known = {t.user_attrs.get("key") for t in study.get_trials(deepcopy=False)}
    trials = []
    for row in rows:
        key = plan_key(row.values)
        if key in known or (
            row.source == "baseline"
            and any(r is not None and r.source == "baseline" for r in map(row_of, study.get_trials(deepcopy=False)))
        ):
            continue
        known.add(key)
        state, values = tell_values(row, req)
        params = {n: row.values[n] for n, d in choices.items() if row.values.get(n) in d.choices}
        inside = len(params) == len(choices)
        attrs = row_attrs(row, key)
        if row.source == "baseline":
            attrs["script"] = baseline.script
        trials.append(
            optuna.trial.create_trial(
                state=state,
                values=values,
                params=params if inside else {},
                distributions={n: choices[n] for n in params} if inside else {},
                user_attrs=attrs,
            )
        )
    add_finished_trials(study, trials)
    return len(trials)


def _job_baselines(req: Any, rows: list[TrialRow], base_values: Mapping[str, Any]) -> list[TrialRow]:
    """The baseline's system knobs running each other job that has a plan under the cap."""
    from ..plan import job_knobs, make_plan

    step, world = req.setup.step, req.setup.cluster.world_size
    base_job = job_of(step, base_values, world)
    out, seen = [], {base_job}
    for row in rows:
        job = job_of(step, row.values, world)
        if row.status != Status.OK or job in seen:
            continue
        seen.add(job)
        values = dict(base_values)
        values.update({k: row.values[k] for k in job_knobs(step)})
        values.update(_batch_split(step, row.values))
        try:
            make_plan(step, values)
        except Exception:  # noqa: BLE001 - a job the baseline's settings cannot express has no own baseline
            continue
        table = _score(req, {k: np.array([v]) for k, v in values.items()})
        out.append(_row(req, values, table, 0, "job-baseline"))
    return out


def _batch_split(step: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {n: as_python(values[n]) for n in step_strategy(step).batch.knobs}
