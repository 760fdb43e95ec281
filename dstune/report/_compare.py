"""Side-by-side data for several study directories: each study's pick, its rates, and what it costs."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

from ..record import Status
from ._answer import stated_speedup, target_stack, where
from ._load import StudyDir
from ._records import PlanFigures
from ._table import Column, Kind, Table, format_value
from ._trials import baseline_issues, baseline_status, feasible_trials, plan_pair
from ._values import jsonable, show


class CompareEntry(NamedTuple):
    label: str
    model: str
    step: str
    gpus: int
    gpu_type: str
    backend: str
    trials: int
    pick: PlanFigures | None
    baseline: PlanFigures | None
    speedup: float | None
    memory_cap_bytes: float | None
    samples_per_s_per_gpu: float
    cost_per_million_tokens: float | None
    baseline_flag: str | None = None
    """Why the speedup's reference is not a plan that runs here ('infeasible', 'broken on stack he (...) (...)');
    None when the baseline ran as shipped."""


@dataclass(frozen=True)
class CompareData:
    entries: tuple[CompareEntry, ...]
    gpu_hour_price: float | None
    summary: Table
    knobs: Table
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["summary"], out["knobs"] = self.summary.to_json(), self.knobs.to_json()
        return jsonable(out)


def cost_per_million_tokens(price_per_gpu_hour: float, gpus: int, tokens_per_s: float) -> float:
    """USD for 10^6 tokens: the cluster costs price * gpus per hour and makes tokens_per_s * 3600 tokens."""
    return price_per_gpu_hour * gpus / 3600.0 / tokens_per_s * 1e6


def _labels(studies: list[StudyDir]) -> list[str]:
    """Directory names, with the parent added where two studies share a name."""
    names = [s.path.resolve().name for s in studies]
    return [f"{s.path.resolve().parent.name}/{n}" if names.count(n) > 1 else n for s, n in zip(studies, names)]


def _entry(label: str, study: StudyDir, price: float | None) -> CompareEntry:
    base, pick = plan_pair(study, feasible_trials(study))
    gpus = study.gpus
    per_gpu = pick.samples_per_s / gpus if pick and gpus else math.nan
    cost = None
    if price is not None and pick and gpus and pick.tokens_per_s > 0:
        cost = cost_per_million_tokens(price, gpus, pick.tokens_per_s)
    speedup = stated_speedup(study.meta, base, pick)
    meta = study.meta
    return CompareEntry(
        label,
        str(meta.get("model", "?")),
        study.step,
        gpus,
        str(meta.get("gpu_type", "?")),
        study.backend,
        len(study.trials),
        pick,
        base,
        speedup,
        study.memory_cap_bytes,
        per_gpu,
        cost,
        _baseline_flag(study, base),
    )


def _baseline_flag(study: StudyDir, base: PlanFigures | None) -> str | None:
    status = baseline_status(study)
    issues = baseline_issues(study)
    cap = study.memory_cap_bytes
    if issues:
        return f"broken on {where(target_stack(study.meta))} (" + ", ".join(i.split(":")[0] for i in issues) + ")"
    if status not in (None, Status.OK):
        return str(status)
    if base is not None and cap is not None and base.gpu_peak_bytes > cap:
        return "over the memory cap"
    return None


def _summary(entries: list[CompareEntry], price: float | None) -> Table:
    """One row per figure, one column per study (side by side), values formatted row by row."""
    picks = [e.pick for e in entries]
    rows: list[tuple[str, Kind, list[Any]]] = [
        ("model", "text", [e.model for e in entries]),
        ("RLHF step", "text", [e.step.upper() for e in entries]),
        ("GPUs", "text", [f"{e.gpus} x {e.gpu_type}" for e in entries]),
        ("backend", "text", [e.backend for e in entries]),
        ("trials", "int", [e.trials for e in entries]),
        ("basis", "text", [p.basis if p else None for p in picks]),
        ("samples/s", "rate", [p.samples_per_s if p else None for p in picks]),
        ("samples/s per GPU", "rate", [e.samples_per_s_per_gpu for e in entries]),
        ("tokens/s", "rate", [p.tokens_per_s if p else None for p in picks]),
        ("peak GPU memory", "gib", [p.gpu_peak_bytes if p else None for p in picks]),
        ("memory cap", "gib", [e.memory_cap_bytes for e in entries]),
        ("MFU", "percent", [p.mfu if p else None for p in picks]),
        ("speedup vs baseline", "ratio", [e.speedup for e in entries]),
        ("baseline", "text", [e.baseline_flag or "ran as shipped" for e in entries]),
    ]
    first = entries[0]
    if len(entries) > 1 and first.pick and first.pick.samples_per_s > 0:  # scaling: what more GPUs buy
        rows.append(
            (
                f"samples/s vs {first.label}",
                "ratio",
                [p.samples_per_s / first.pick.samples_per_s if p else None for p in picks],
            )
        )
        rows.append(
            (
                f"per-GPU samples/s vs {first.label}",
                "percent",
                [e.samples_per_s_per_gpu / first.samples_per_s_per_gpu for e in entries],
            )
        )
    if price is not None:
        rows.append(
            (f"USD per million tokens at ${price:g}/GPU-hour", "usd", [e.cost_per_million_tokens for e in entries])
        )
    columns = (Column("figure"), *(Column(e.label, "num") for e in entries))
    return Table(columns, tuple((name, *(format_value(v, kind) for v in values)) for name, kind, values in rows))


def _knob_table(entries: list[CompareEntry]) -> tuple[Table, int]:
    """Knobs on which the picks differ (rows) by study (columns); and how many knobs they share."""
    picks = [e.pick.knobs if e.pick else {} for e in entries]
    names = list(dict.fromkeys(k for knobs in picks for k in knobs))
    differing = [k for k in names if len({show(p.get(k, "–")).lower() for p in picks}) > 1]
    shared = len(names) - len(differing)
    rows = tuple((k, *(show(p[k]) if k in p else None for p in picks)) for k in differing)
    return Table((Column("knob"), *(Column(e.label) for e in entries)), rows), shared


def build_compare(studies: list[StudyDir], gpu_hour_price: float | None = None) -> CompareData:
    entries = [_entry(label, s, gpu_hour_price) for label, s in zip(_labels(studies), studies)]
    knobs, shared = _knob_table(entries)
    notes = []
    if any(s.simulated for s in studies):
        names = ", ".join(e.label for e, s in zip(entries, studies) if s.simulated)
        notes.append(f"Simulated studies ({names}): their figures are cost-model predictions, not measurements.")
    if len({e.pick.basis for e in entries if e.pick}) > 1:
        notes.append("Some studies are measured and some predicted: compare their rates with care.")
    if len({e.step for e in entries}) > 1 or len({e.model for e in entries}) > 1:
        notes.append("The studies tune different models or RLHF steps: a sample is not the same work in each.")
    notes += [
        f"{e.label}: the baseline is {e.baseline_flag}, so its speedup compares the pick with a plan that does "
        "not run here as shipped."
        for e in entries
        if e.baseline_flag and e.speedup is not None
    ]
    notes += [f"{e.label}: no trial finished within the memory cap, so it has no pick." for e in entries if not e.pick]
    notes.append(
        f"The picks share {shared} knob setting(s); the table lists only the knobs where they differ."
        if knobs.rows
        else "The picks use identical settings."
    )
    return CompareData(tuple(entries), gpu_hour_price, _summary(entries, gpu_hour_price), knobs, tuple(notes))
