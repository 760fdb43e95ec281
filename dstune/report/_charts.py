"""The data of the charts: memory/throughput scatter with its Pareto front, phase bars, best-so-far history."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..record import Status
from ._load import StudyDir
from ._records import History, PhaseBar, Phases, PlanFigures, Point, Scatter
from ._trials import baseline_status, broken_baseline, from_row, is_baseline, matching_row

PHASE_BARS = 5


def pareto_front(memory: np.ndarray, throughput: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Points no other point beats on both less memory and more throughput, by increasing memory."""
    front: list[tuple[float, float]] = []
    for i in np.lexsort((-throughput, memory)):
        if not front or throughput[i] > front[-1][1]:
            front.append((float(memory[i]), float(throughput[i])))
    return tuple(front)


PLOTTED_STATUSES = (Status.OK, Status.OOM, Status.PRUNED, Status.INFEASIBLE)
"""Statuses whose figures a chart may place: a timed-out, crashed or failed trial has no throughput of its own."""


def build_scatter(
    study: StudyDir, feasible: pd.DataFrame, pick: PlanFigures | None, base: PlanFigures | None
) -> Scatter:
    t = study.trials
    drawable = t["fig_gpu_peak_bytes"].notna() & t["status"].isin(PLOTTED_STATUSES)
    points = tuple(
        Point(int(r.number), r.status, r.source, float(r.fig_gpu_peak_bytes), float(r.fig_samples_per_s))
        for r in t[drawable & ~t["source"].isin(("repeat", "confirm"))].itertuples()
    )
    front = pareto_front(feasible["fig_gpu_peak_bytes"].to_numpy(float), feasible["fig_samples_per_s"].to_numpy(float))
    pick_row = matching_row(study, pick.knobs) if pick else None
    base_rows = t[t["source"] == "baseline"]
    base_number = int(base_rows["number"].iloc[0]) if len(base_rows) else None
    if base_number is None and base is not None:
        row = matching_row(study, base.knobs)
        base_number = int(row["number"]) if row is not None else None
    return Scatter(
        points,
        front,
        study.memory_cap_bytes,
        int(pick_row["number"]) if pick_row is not None else None,
        base_number,
        int(
            (
                t["fig_gpu_peak_bytes"].isna()
                & t["status"].isin(PLOTTED_STATUSES)
                & ~t["source"].isin(("repeat", "confirm"))
            ).sum()
        ),
        bool(broken_baseline(study)),
    )


def _per_ksample(fig: PlanFigures, names: tuple[str, ...]) -> PhaseBar | None:
    samples_per_step = fig.samples_per_s * fig.step_s
    phases = dict(fig.phases)
    if not (samples_per_step > 0) or not all(math.isfinite(phases.get(n, math.nan)) for n in names):
        return None
    return PhaseBar(fig.label, tuple(1000.0 * phases[n] / samples_per_step for n in names), fig.step_s)


def build_phases(
    study: StudyDir, feasible: pd.DataFrame, base: PlanFigures | None, pick_number: int | None, base_number: int | None
) -> Phases:
    """The baseline's bar, then the five fastest trials' (the baseline trial is not drawn twice)."""
    names = study.phases
    bars = []
    if base is not None and (bar := _per_ksample(base, names)):
        label = "baseline" if base_number is None else f"baseline (trial {base_number})"
        bars.append(bar._replace(label=label))
    for _, row in feasible[feasible["number"] != base_number].head(PHASE_BARS).iterrows():
        label = f"trial {int(row['number'])}" + (" (pick)" if int(row["number"]) == pick_number else "")
        if bar := _per_ksample(from_row(label, study, row), names):
            bars.append(bar)
    return Phases(names, tuple(bars))


def build_history(study: StudyDir, base: PlanFigures | None) -> History:
    """Best so far over the baseline's job only (a rate of another job is other work). Empty for a simulated
    study: its trial numbers are recording order, not a search's progress, so the chart is left out."""
    t = study.trials
    if study.simulated:
        return History((), (), (), None)
    ok = t["status"] == Status.OK
    if broken_baseline(study):
        ok &= ~is_baseline(study)
    job = (study.meta.get("job") or {}).get("label")
    if job and "job" in t:
        ok &= t["job"] == job
    if study.memory_cap_bytes is not None:
        ok &= ~(t["fig_gpu_peak_bytes"] > study.memory_cap_bytes)
    values = t["fig_samples_per_s"].where(ok)
    best = values.cummax().ffill()  # cummax leaves NaN at failed trials; the best so far carries over
    ran = baseline_status(study) in (None, Status.OK)  # no line for a baseline that failed
    return History(
        tuple(int(n) for n in t["number"]),
        tuple(float(v) for v in values),
        tuple(float(v) for v in best),
        base.samples_per_s if base is not None and ran else None,
    )
