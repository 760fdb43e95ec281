"""Every figure and table of one study report, computed once as frozen records.

As in Optuna's visualization, data comes first and renderers (HTML, Markdown,
PNG, terminal, JSON) only draw it, so all formats show the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..record import Status
from ._answer import search_notes, stated_speedup, target_stack, verdict_line, where
from ._importance import Importance, grid_importance, param_importance
from ._load import StudyDir, study_name_and_storage
from ._table import Column, Table
from ._values import jsonable, number, same, scalar, show

TOP_K = 10
PHASE_BARS = 5


class PlanFigures(NamedTuple):
    """One plan's knobs and figures; `basis` is 'measured' or 'predicted'."""

    label: str
    knobs: dict[str, Any]
    samples_per_s: float
    tokens_per_s: float
    gpu_peak_bytes: float
    step_s: float
    phases: tuple[tuple[str, float], ...]
    mfu: float
    basis: str


class Header(NamedTuple):
    title: str
    model: str
    critic_model: str | None
    step: str
    gpus: int
    nodes: int | None
    gpu_type: str
    backend: str
    study: str | None
    created: str | None
    versions: tuple[tuple[str, str], ...]
    status_counts: tuple[tuple[str, int], ...]
    devices: tuple[str, ...]


class Alternative(NamedTuple):
    """The pick of another class of training job (`--explore`), against the baseline's settings on that job."""

    job_class: str
    job: str
    trial: int | None
    samples_per_s: float
    basis: str
    speedup: float | None
    speedup_interval: tuple[float, float] | None


class Headline(NamedTuple):
    """Baseline against the pick, on one basis (both measured, or both predicted), for one training job."""

    baseline: PlanFigures | None
    pick: PlanFigures | None
    baseline_status: str | None
    baseline_source: str | None
    speedup: float | None
    memory_cap_bytes: float | None
    headroom_bytes: float | None
    changes: tuple[tuple[str, Any, Any], ...]
    job: str | None = None
    speedup_interval: tuple[float, float] | None = None
    alternatives: tuple[Alternative, ...] = ()
    baseline_issues: tuple[str, ...] = ()
    """Known issues of severity broken the baseline hits on the target stack, as 'id: consequence'."""
    baseline_ran_on_cpu: bool = False
    """The baseline was measured on DeepSpeed's CPU accelerator, which takes none of a GPU stack's broken paths."""
    speedup_uncalibrated: str | None = None
    """plan.json's reason a predicted speedup has no interval ('uncalibrated: ...'), where it says one."""
    verdict: str | None = None
    """The search's one-line verdict (plan.json `verdict`), the line the terminal and launch script print."""
    stack: str | None = None
    """The target stack's label, e.g. 'he (deepspeed 0.19.8, transformers 4.48.3)'; None: not recorded."""
    search_notes: tuple[str, ...] = ()
    """The search's notes (stacks compared, known issues hit, what predictions assume), in plain text."""


class Point(NamedTuple):
    number: int
    status: str
    source: str
    gpu_peak_bytes: float
    samples_per_s: float


class Scatter(NamedTuple):
    points: tuple[Point, ...]
    front: tuple[tuple[float, float], ...]
    memory_cap_bytes: float | None
    pick_number: int | None
    baseline_number: int | None
    undrawn: int
    baseline_broken: bool = False
    """The baseline is broken on the target stack: drawn and labelled as the reference, left off the front."""


class PhaseBar(NamedTuple):
    """Seconds per 1,000 samples spent in each phase: comparable across batch sizes."""

    label: str
    seconds_per_ksample: tuple[float, ...]
    step_s: float


class Phases(NamedTuple):
    names: tuple[str, ...]
    bars: tuple[PhaseBar, ...]


class History(NamedTuple):
    numbers: tuple[int, ...]
    values: tuple[float, ...]
    best: tuple[float, ...]
    baseline: float | None


class Accuracy(NamedTuple):
    """Cost model against measurement, over trials that have both."""

    throughput: tuple[tuple[float, float], ...]
    memory: tuple[tuple[float, float], ...]
    throughput_mape: float | None
    memory_mape: float | None
    spearman: float | None
    ooms_measured: int
    ooms_predicted: int
    note: str


@dataclass(frozen=True)
class ReportData:
    header: Header
    notes: tuple[str, ...]
    headline: Headline
    top: Table
    scatter: Scatter
    phases: Phases
    history: History
    importance: Importance
    accuracy: Accuracy

    @property
    def top_ranked(self) -> int:
        """Ranked rows of the top table (a broken baseline's reference row has no rank)."""
        return sum(1 for row in self.top.rows if row[0] is not None)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["top"] = self.top.to_json()
        return jsonable(out)


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


def _from_row(label: str, study: StudyDir, row: pd.Series) -> PlanFigures:
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


def _is_baseline(study: StudyDir) -> pd.Series:
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
        keep &= ~_is_baseline(study)
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


def _matching_row(study: StudyDir, knobs: dict[str, Any]) -> pd.Series | None:
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
        pick = _from_row("pick", study, feasible.iloc[0])
    if isinstance(base_meta.get("plan"), dict) and isinstance(base_meta.get(base_key), dict):
        base = _from_estimate("baseline", base_meta["plan"], base_meta[base_key], base_key, base_meta.get("predicted"))
    else:
        rows = study.trials[study.trials["source"] == "baseline"]
        if len(rows) and pd.notna(rows["fig_samples_per_s"].iloc[0]):
            base = _from_row("baseline", study, rows.iloc[0])
    return base, pick


def baseline_status(study: StudyDir) -> str | None:
    """How the DeepSpeed-Chat baseline trial ended (plan.json, else trials.csv); None if unknown."""
    status = (study.meta.get("baseline") or {}).get("status")
    if status:
        return str(status)
    rows = study.trials[study.trials["source"] == "baseline"]
    return str(rows["status"].iloc[0]) if len(rows) else None


def _headline(study: StudyDir, base: PlanFigures | None, pick: PlanFigures | None) -> Headline:
    speedup = stated_speedup(study.meta, base, pick)
    cap = study.memory_cap_bytes
    headroom = cap - pick.gpu_peak_bytes if cap is not None and pick and math.isfinite(pick.gpu_peak_bytes) else None
    changes: tuple[tuple[str, Any, Any], ...] = ()
    if base and pick:
        changes = tuple(
            (k, base.knobs.get(k), v) for k, v in pick.knobs.items() if k in base.knobs and not same(base.knobs[k], v)
        )
    meta = study.meta.get("baseline") or {}
    source = str(meta["script"]) if meta.get("script") else None
    if source and meta.get("adjustments"):
        source += " (adjusted: " + "; ".join(str(a) for a in meta["adjustments"]) + ")"
    stated = study.meta.get("speedup_over_baseline")
    interval = None
    if isinstance(stated, dict) and speedup is not None and stated.get("interval"):
        interval = (float(stated["interval"][0]), float(stated["interval"][1]))
        if stated.get("basis") == "measured" and stated.get("value"):
            speedup = float(stated["value"])  # from the re-measured pairs, as the terminal and plan.json state it
    job = (study.meta.get("job") or {}).get("label")
    return Headline(
        base,
        pick,
        baseline_status(study),
        source,
        speedup,
        cap,
        headroom,
        changes,
        job,
        interval,
        _alternatives(study),
        baseline_issues(study),
        bool(study.on_cpu and base is not None and base.basis == "measured"),
        _uncalibrated(stated) if speedup is not None else None,
        verdict_line(study.meta),
        target_stack(study.meta),
        search_notes(study.meta),
    )


def _uncalibrated(stated: Any) -> str | None:
    backing = stated.get("backing") if isinstance(stated, dict) else None
    return str(backing) if isinstance(backing, str) and backing.startswith("uncalibrated") else None


def baseline_issues(study: StudyDir) -> tuple[str, ...]:
    """plan.json's broken known issues of the baseline, as 'id: consequence'."""
    issues = (study.meta.get("baseline") or {}).get("known_issues") or ()
    return tuple(f"{i.get('id')}: {i.get('consequence')}" for i in issues if isinstance(i, dict))


def _alternatives(study: StudyDir) -> tuple[Alternative, ...]:
    out = []
    for alt in study.meta.get("alternatives") or ():
        pick = alt.get("pick") or {}
        figures = pick.get("measured") or pick.get("predicted") or {}
        speed = alt.get("speedup_over_baseline_of_this_job") or {}
        interval = speed.get("interval")
        out.append(
            Alternative(
                str(alt.get("job_class", "")),
                str(alt.get("job", "")),
                pick.get("trial"),
                number((figures.get("throughput") or {}).get("samples_per_s")),
                str(figures.get("basis", "")),
                speed.get("value"),
                (float(interval[0]), float(interval[1])) if interval else None,
            )
        )
    return tuple(out)


def _header(study: StudyDir) -> Header:
    m = study.meta
    counts = study.trials["status"].value_counts()
    order = [s.value for s in Status if s in counts]
    order += [s for s in counts.index if s not in order]
    versions = tuple((str(k), str(v)) for k, v in (m.get("versions") or {}).items() if v is not None)
    model = str(m.get("model", "?"))
    gpus = study.gpus
    title = f"{model} {study.step.upper()} on {m.get('hardware') or f'{gpus} x ' + str(m.get('gpu_type', '?'))}"
    devices = () if study.simulated else study.devices
    return Header(
        title,
        model,
        m.get("critic_model"),
        study.step,
        gpus,
        m.get("nodes"),
        str(m.get("gpu_type", "?")),
        study.backend,
        study_name_and_storage(m)[0],
        m.get("created"),
        versions,
        tuple((str(s), int(counts[s])) for s in order),
        devices,
    )


def _changes(knobs: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    return [f"{k}={show(v)}" for k, v in knobs.items() if k in reference and not same(reference[k], v)]


def _settings(rank: int, knobs: dict[str, Any], first: dict[str, Any], base: dict[str, Any]) -> str:
    """#1 against the baseline; the runners-up against #1, which is what tells them apart."""
    if base and not _changes(knobs, base):
        return "the baseline's settings"
    if rank == 1:
        return "baseline + " + ", ".join(_changes(knobs, base)) if base else "(no baseline to compare with)"
    diff = _changes(knobs, first)
    return "as #1 but " + ", ".join(diff) if diff else "same settings as #1"


def _top_table(study: StudyDir, feasible: pd.DataFrame, base: PlanFigures | None) -> Table:
    columns = (
        Column("rank", "int"),
        Column("trial", "int"),
        Column("source"),
        Column("samples/s", "rate"),
        Column("vs #1", "delta"),
        Column("tokens/s", "rate"),
        Column("peak GPU memory", "gib"),
        Column("step", "seconds"),
        Column("MFU", "percent"),
        Column("basis"),
        Column("settings"),
    )
    base_knobs = base.knobs if base else {}
    rows: list[tuple[Any, ...]] = []
    first: dict[str, Any] = {}
    best = math.nan
    for rank, (_, row) in enumerate(feasible.head(TOP_K).iterrows(), start=1):
        knobs = {k: scalar(row[k]) for k in study.knobs}
        if rank == 1:
            first, best = knobs, float(row["fig_samples_per_s"])
        gap = None if rank == 1 else row["fig_samples_per_s"] / best - 1.0
        rows.append(
            (
                rank,
                int(row["number"]),
                row["source"],
                row["fig_samples_per_s"],
                gap,
                row["fig_tokens_per_s"],
                row["fig_gpu_peak_bytes"],
                row["fig_step_s"],
                row["fig_mfu"],
                row["fig_basis"],
                _settings(rank, knobs, first, base_knobs),
            )
        )
    broken = broken_baseline(study)
    own = study.trials[(study.trials["source"] == "baseline") & study.trials["fig_samples_per_s"].notna()]
    if broken and len(own):
        row = own.iloc[0]
        rows.append(
            (
                None,
                int(row["number"]),
                "baseline (broken)",
                row["fig_samples_per_s"],
                None,
                row["fig_tokens_per_s"],
                row["fig_gpu_peak_bytes"],
                row["fig_step_s"],
                row["fig_mfu"],
                row["fig_basis"],
                f"reference, not ranked: DeepSpeed-Chat's script as shipped, broken on "
                f"{where(target_stack(study.meta))} ({', '.join(broken)})",
            )
        )
    return Table(columns, tuple(rows))


def pareto_front(memory: np.ndarray, throughput: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Points no other point beats on both less memory and more throughput, by increasing memory."""
    front: list[tuple[float, float]] = []
    for i in np.lexsort((-throughput, memory)):
        if not front or throughput[i] > front[-1][1]:
            front.append((float(memory[i]), float(throughput[i])))
    return tuple(front)


PLOTTED_STATUSES = (Status.OK, Status.OOM, Status.PRUNED, Status.INFEASIBLE)
"""Statuses whose figures a chart may place: a timed-out, crashed or failed trial has no throughput of its own."""


def _scatter(study: StudyDir, feasible: pd.DataFrame, pick: PlanFigures | None, base: PlanFigures | None) -> Scatter:
    t = study.trials
    drawable = t["fig_gpu_peak_bytes"].notna() & t["status"].isin(PLOTTED_STATUSES)
    points = tuple(
        Point(int(r.number), r.status, r.source, float(r.fig_gpu_peak_bytes), float(r.fig_samples_per_s))
        for r in t[drawable & ~t["source"].isin(("repeat", "confirm"))].itertuples()
    )
    front = pareto_front(feasible["fig_gpu_peak_bytes"].to_numpy(float), feasible["fig_samples_per_s"].to_numpy(float))
    pick_row = _matching_row(study, pick.knobs) if pick else None
    base_rows = t[t["source"] == "baseline"]
    base_number = int(base_rows["number"].iloc[0]) if len(base_rows) else None
    if base_number is None and base is not None:
        row = _matching_row(study, base.knobs)
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


def _phases(
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
        if bar := _per_ksample(_from_row(label, study, row), names):
            bars.append(bar)
    return Phases(names, tuple(bars))


def _history(study: StudyDir, base: PlanFigures | None) -> History:
    """Best so far over the baseline's job only (a rate of another job is other work). Empty for a simulated
    study: its trial numbers are recording order, not a search's progress, so the chart is left out."""
    t = study.trials
    if study.simulated:
        return History((), (), (), None)
    ok = t["status"] == Status.OK
    if broken_baseline(study):
        ok &= ~_is_baseline(study)
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


def _mape(pairs: list[tuple[float, float]]) -> float | None:
    pairs = [(p, m) for p, m in pairs if m > 0]
    return float(np.mean([abs(p - m) / m for p, m in pairs])) if pairs else None


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Rank correlation (Pearson on average ranks); None when undefined."""
    if len(a) < 3:
        return None
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def _column(t: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(t[name], errors="coerce") if name in t else pd.Series(math.nan, index=t.index)


def _accuracy(study: StudyDir) -> Accuracy:
    t = study.trials
    ps, ms = _column(t, "predicted_samples_per_s"), _column(t, "measured_samples_per_s")
    pm, mm = _column(t, "predicted_gpu_peak_bytes"), _column(t, "measured_gpu_peak_bytes")
    both_t, both_m = ps.notna() & ms.notna(), pm.notna() & mm.notna()
    if study.simulated:  # a simulate study's measured_* are the cost model's own answers, not measurements
        both_t = both_m = pd.Series(False, index=t.index)
    throughput = tuple(zip(ps[both_t].astype(float), ms[both_t].astype(float)))
    memory = tuple(zip(pm[both_m].astype(float), mm[both_m].astype(float)))
    ooms = t["status"] == Status.OOM
    cap = study.memory_cap_bytes
    ooms_predicted = int((ooms & (pm > cap)).sum()) if cap is not None else 0
    if study.simulated:
        note = "simulate backend: nothing was measured, every figure is a cost-model prediction"
    elif not throughput and not memory:
        note = "no trial has both a prediction and a measurement yet"
    else:
        note = f"{len(throughput)} trial(s) with measured throughput, {len(memory)} with measured memory"
    return Accuracy(
        throughput,
        memory,
        _mape(list(throughput)),
        _mape(list(memory)),
        spearman(ps[both_t].to_numpy(float), ms[both_t].to_numpy(float)),
        int(ooms.sum()) if not study.simulated else 0,
        ooms_predicted if not study.simulated else 0,
        note,
    )


def _notes(study: StudyDir, scatter: Scatter, pick: PlanFigures | None) -> tuple[str, ...]:
    notes = []
    if study.simulated:
        notes.append(
            "Backend 'simulate': every figure in this report is a cost-model prediction; nothing was measured on GPUs."
        )
    elif study.backend == "replay":
        notes.append("Backend 'replay': figures are answers from a recorded table of measured trials.")
    interval = study.meta.get("interval")
    if isinstance(interval, dict) and interval.get("note"):
        level = float(interval.get("level", 0.9))
        notes.append(f"Predicted ranges are {level:.0%} intervals: {interval['note']}.")
    gpu_type = str(study.meta.get("gpu_type", ""))
    foreign = [d for d in study.devices if "cpu" in d.lower() or "simulated" in d.lower()]
    if study.on_cpu:
        notes.append(
            "Trials ran on DeepSpeed's CPU accelerator: measured figures are CPU figures, compared only with each "
            "other. The CPU accelerator has no inference kernels and no GPU memory, so no GPU memory cap applies "
            "and nothing here says how the plans run on GPUs."
        )
    elif not study.simulated and foreign:
        notes.append(
            f"Trials ran on {', '.join(foreign)}, not on {gpu_type or 'the GPUs planned for'}: measured "
            f"throughput is not comparable with the cost model's predictions for {gpu_type or 'them'}."
        )
    t = study.trials
    no_memory = (t["fig_basis"] == "measured") & _column(t, "measured_gpu_peak_bytes").isna()
    if not study.simulated and no_memory.any():
        notes.append(
            f"{int(no_memory.sum())} measured trial(s) have no measured GPU memory (e.g. runs on the CPU): "
            "their memory figures are the cost model's predictions."
        )
    if pick is None:
        notes.append("No trial finished within the memory cap yet: there is no pick.")
    unplaced = int((~study.trials["status"].isin(PLOTTED_STATUSES)).sum())
    if unplaced:
        notes.append(
            f"{unplaced} trial(s) timed out, crashed or failed: they have no throughput and are not drawn in the charts."
        )
    if scatter.undrawn:
        notes.append(
            f"{scatter.undrawn} trial(s) have no memory figure (e.g. rejected by a plan rule before "
            "scoring) and are not drawn in the scatter plot."
        )
    return tuple(notes)


def build_report(study: StudyDir, *, with_importance: bool = True) -> ReportData:
    """All figure data for one study directory."""
    feasible = feasible_trials(study)
    base, pick = plan_pair(study, feasible)
    scatter = _scatter(study, feasible, pick, base)
    if study.simulated:
        importance = grid_importance(study.path / "study.db", *study_name_and_storage(study.meta))
    elif with_importance:
        importance = param_importance(study.path / "study.db", *study_name_and_storage(study.meta))
    else:
        importance = Importance((), "parameter importance not computed (disabled)")
    return ReportData(
        header=_header(study),
        notes=_notes(study, scatter, pick),
        headline=_headline(study, base, pick),
        top=_top_table(study, feasible, base),
        scatter=scatter,
        phases=_phases(study, feasible, base, scatter.pick_number, scatter.baseline_number),
        history=_history(study, base),
        importance=importance,
        accuracy=_accuracy(study),
    )
