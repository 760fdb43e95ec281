"""Which trials a report counts: the feasible ones in the search's order, the baseline and the pick."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..record import Status
from ._load import StudyDir
from ._records import PlanFigures
from ._values import number, same, scalar


def _from_estimate(
    label: str, knobs: dict[str, Any], block: dict[str, Any], basis: str, fallback: dict[str, Any] | None = None
) -> PlanFigures:
    """A plan.json figures block; GPU memory a measurement lacks (a CPU run has none) comes from
    `fallback`, the prediction, so the pick can still be placed against the memory cap."""
    throughput, memory, time = block.get("throughput", {}), dict(block.get("memory") or {}), block.get("time", {})
    fallback = fallback or {}
    if memory.get("gpu_peak_bytes") is None:
        memory["gpu_peak_bytes"] = (fallback.get("memory") or {}).get("gpu_peak_bytes")
    phases = tuple((str(k), number(v)) for k, v in (time.get("phases") or {}).items())
    return PlanFigures(
        label,
        dict(knobs),
        number(throughput.get("samples_per_s")),
        number(throughput.get("tokens_per_s")),
        number(memory.get("gpu_peak_bytes")),
        number(time.get("step_s")),
        phases,
        number(block.get("mfu")),
        basis,
    )


def from_row(label: str, study: StudyDir, row: pd.Series) -> PlanFigures:
    knobs = {k: scalar(row[k]) for k in study.knobs}
    phases = tuple((p, float(row[f"fig_time_{p}"])) for p in study.phases)
    return PlanFigures(
        label,
        knobs,
        float(row["fig_samples_per_s"]),
        float(row["fig_tokens_per_s"]),
        float(row["fig_gpu_peak_bytes"]),
        float(row["fig_step_s"]),
        phases,
        float(row["fig_mfu"]),
        str(row["fig_basis"]),
    )


def broken_baseline(study: StudyDir) -> tuple[str, ...]:
    """Ids of the broken known issues and stack rules the shipped baseline hits (plan.json), when it is not
    the pick: such a baseline is the speedup's reference, never a plan the report ranks. Empty otherwise."""
    meta = study.meta.get("baseline") or {}
    if not meta.get("broken_on_this_stack") or (
        meta.get("plan") is not None and meta.get("plan") == study.meta.get("plan")
    ):
        return ()
    ids = tuple(str(i.get("id")) for i in meta.get("known_issues") or () if isinstance(i, dict) and i.get("id"))
    return ids or ("broken on its target stack",)


def is_baseline(study: StudyDir) -> pd.Series:
    """Trials of the baseline's settings: its own row and any other trial of the same knobs."""
    t = study.trials
    mine = t["source"] == "baseline"
    knobs = (study.meta.get("baseline") or {}).get("plan")
    if isinstance(knobs, dict) and study.knobs:
        same_knobs = pd.Series(True, index=t.index)
        for name in study.knobs:
            if name in knobs:
                same_knobs &= t[name].map(lambda v, want=knobs[name]: same(v, want))
        mine |= same_knobs
    return mine


def feasible_trials(study: StudyDir) -> pd.DataFrame:
    """Trials that ran fine, fit under the memory cap and have a throughput, in plan.json's `ranked_trials` order
    where it has one (the search's ranking), else fastest first (a "repeat" row re-reports an earlier trial's plan and is left out, and so is a baseline that is broken
    on this stack: the search never picks it, so the report never ranks it)."""
    t = study.trials
    keep = (t["status"] == Status.OK) & t["fig_samples_per_s"].notna() & ~t["source"].isin(("repeat", "confirm"))
    if broken_baseline(study):
        keep &= ~is_baseline(study)
    job = (study.meta.get("job") or {}).get("label")
    if job and "job" in t:  # the top table ranks plans of the pick's training job only
        keep &= t["job"] == job
    if study.memory_cap_bytes is not None:
        keep &= ~(t["fig_gpu_peak_bytes"] > study.memory_cap_bytes)
    fit = t[keep].copy()
    ranked = study.meta.get("ranked_trials")
    if isinstance(ranked, list) and len(fit):  # the search's own order (ties to fewer risks): one answer
        order = {int(n): i for i, n in enumerate(ranked)}
        fit = fit[fit["number"].map(lambda n: int(n) in order)]
        return fit.iloc[np.argsort([order[int(n)] for n in fit["number"]], kind="stable")]
    if not len(fit):
        return fit
    tolerance = float(study.meta.get("tie_tolerance") or 0.0)  # the pick rule: ties go to less memory
    fit["_tier"] = (fit["fig_samples_per_s"] < fit["fig_samples_per_s"].max() * (1.0 - tolerance)).astype(int)
    fit["_rate"] = fit["fig_samples_per_s"].where(fit["_tier"] == 1, 0.0)
    fit = fit.sort_values(
        ["_tier", "_rate", "fig_gpu_peak_bytes", "number"], ascending=[True, False, True, True], kind="stable"
    )
    return fit.drop(columns=["_tier", "_rate"])


def matching_row(study: StudyDir, knobs: dict[str, Any]) -> pd.Series | None:
    if not knobs or not study.knobs:
        return None
    t = study.trials
    match = pd.Series(True, index=t.index)
    for name in study.knobs:
        if name in knobs:
            match &= t[name].map(lambda v, want=knobs[name]: same(v, want))
    rows = t[match & (t["status"] == Status.OK)]
    return rows.iloc[0] if len(rows) else (t[match].iloc[0] if match.any() else None)


def plan_pair(study: StudyDir, feasible: pd.DataFrame) -> tuple[PlanFigures | None, PlanFigures | None]:
    """Baseline and pick from plan.json (from trials.csv where plan.json lacks them), measured only
    when both are, so the speedup compares like with like; a failed baseline leaves the pick measured."""
    meta, base_meta = study.meta, study.meta.get("baseline") or {}
    measured = lambda m: isinstance(m.get("measured"), dict)  # noqa: E731
    base_failed = baseline_status(study) not in (None, Status.OK)
    pick_key = "measured" if measured(meta) and (measured(base_meta) or base_failed) else "predicted"
    base_key = "measured" if measured(meta) and measured(base_meta) else "predicted"
    pick = base = None
    if isinstance(meta.get("plan"), dict) and isinstance(meta.get(pick_key), dict):
        pick = _from_estimate("pick", meta["plan"], meta[pick_key], pick_key, meta.get("predicted"))
    elif len(feasible):
        pick = from_row("pick", study, feasible.iloc[0])
    if isinstance(base_meta.get("plan"), dict) and isinstance(base_meta.get(base_key), dict):
        base = _from_estimate("baseline", base_meta["plan"], base_meta[base_key], base_key, base_meta.get("predicted"))
    else:
        rows = study.trials[study.trials["source"] == "baseline"]
        if len(rows) and pd.notna(rows["fig_samples_per_s"].iloc[0]):
            base = from_row("baseline", study, rows.iloc[0])
    return base, pick


def baseline_status(study: StudyDir) -> str | None:
    """How the DeepSpeed-Chat baseline trial ended (plan.json, else trials.csv); None if unknown."""
    status = (study.meta.get("baseline") or {}).get("status")
    if status:
        return str(status)
    rows = study.trials[study.trials["source"] == "baseline"]
    return str(rows["status"].iloc[0]) if len(rows) else None


def baseline_issues(study: StudyDir) -> tuple[str, ...]:
    """plan.json's broken known issues of the baseline, as 'id: consequence'."""
    issues = (study.meta.get("baseline") or {}).get("known_issues") or ()
    return tuple(f"{i.get('id')}: {i.get('consequence')}" for i in issues if isinstance(i, dict))
