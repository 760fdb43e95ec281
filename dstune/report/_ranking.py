"""The top table: the fastest feasible plans, each told apart from the baseline or from #1."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ._answer import target_stack, where
from ._load import StudyDir
from ._records import PlanFigures
from ._table import Column, Table
from ._trials import broken_baseline
from ._values import same, scalar, show

TOP_K = 10


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


def build_top_table(study: StudyDir, feasible: pd.DataFrame, base: PlanFigures | None) -> Table:
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
