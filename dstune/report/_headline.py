"""The headline: baseline against the pick on one basis, as plan.json states the speedup and verdict."""

from __future__ import annotations

import math
from typing import Any

from ._answer import search_notes, stated_speedup, target_stack, verdict_line
from ._load import StudyDir
from ._records import Alternative, Headline, PlanFigures
from ._trials import baseline_issues, baseline_status
from ._values import number, same


def build_headline(study: StudyDir, base: PlanFigures | None, pick: PlanFigures | None) -> Headline:
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
