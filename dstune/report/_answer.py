"""The search's answer as plan.json states it: its verdict line, its speedup, and the target stack's name.

The report shows what the search decided, never a figure it recomputed: where plan.json says
`speedup_over_baseline: null` (the baseline did not run, or has no figures on the pick's basis), the report
states no speedup either. Study folders without these keys (written before them) fall back to the
figures: pick over baseline, on one basis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..catalog import Stack


def stated_speedup(meta: Mapping[str, Any], base: Any, pick: Any) -> float | None:
    """plan.json's speedup (None where it states none, or where the study has no baseline or pick figures any
    more); without the key, pick over baseline on one basis."""
    if base is None or pick is None:
        return None
    if "speedup_over_baseline" in meta:
        stated = meta["speedup_over_baseline"]
        value = stated.get("value") if isinstance(stated, Mapping) else None
        return float(value) if value is not None else None
    if base and pick and base.basis == pick.basis and base.samples_per_s > 0 and math.isfinite(pick.samples_per_s):
        return float(pick.samples_per_s / base.samples_per_s)
    return None


def target_stack(meta: Mapping[str, Any]) -> str | None:
    """'he (deepspeed 0.19.8, transformers 4.48.3)': the stack the plan was made for (None: not recorded)."""
    raw = meta.get("stack")
    if not isinstance(raw, Mapping) or not raw.get("name"):
        return None
    requires = {str(k): str(v) for k, v in (raw.get("requires") or {}).items()}  # as Stack.to_json wrote them
    return Stack(name=str(raw["name"]), requires=requires).label


def where(stack: str | None) -> str:
    """'stack he (...)', or, for a study that recorded none, 'the stack it ran on'."""
    return f"stack {stack}" if stack else "the stack it ran on"


def verdict_line(meta: Mapping[str, Any]) -> str | None:
    """The search's own one-line verdict (dstune.search.Verdict), as written to plan.json."""
    verdict = meta.get("verdict")
    line = verdict.get("line") if isinstance(verdict, Mapping) else None
    return str(line) if line else None


def search_notes(meta: Mapping[str, Any]) -> tuple[str, ...]:
    """The search's notes (stacks compared, known issues hit, what the predictions assume), in its order."""
    return tuple(str(n) for n in meta.get("notes") or () if n)
