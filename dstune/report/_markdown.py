"""Markdown (GitHub flavour) with the PNG figures as files beside it.

`_m` escapes HTML and Markdown syntax in every value from the study directory, so
nothing in a model or directory name can break a table or inject markup.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Any

from ._compare import CompareData
from ._plots import Rendered
from ._records import ReportData
from ._sections import (
    ALTERNATIVES_NOTE,
    FIGURES_LEFT_OUT,
    accuracy_lines,
    alternatives_table,
    baseline_line,
    changes_table,
    explanation,
    facts,
    headline_table,
    importance_table,
    verdict,
)
from ._table import NUMERIC_KINDS, Table

_SPECIAL = re.compile(r"([\\`*\[\]|#!~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def _m(value: Any) -> str:
    text = html.escape(str(value), quote=False).replace("\n", " ").replace("\r", " ")
    return _SPECIAL.sub(r"\\\1", text)


def table_md(table: Table) -> str:
    lines = [
        "| " + " | ".join(_m(c.name) for c in table.columns) + " |",
        "|" + "|".join("---:" if c.kind in NUMERIC_KINDS else "---" for c in table.columns) + "|",
    ]
    lines += ["| " + " | ".join(_m(v) for v in row) + " |" for row in table.formatted()]
    return "\n".join(lines)


def _figure(f: Rendered, folder: str) -> list[str]:
    return [f"## {_m(f.title)}", "", f"![{_m(f.title)}]({folder}/{f.name}.png)", "", _m(f.caption), ""]


def _notes(notes: Iterable[str]) -> list[str]:
    return [line for n in notes for line in (f"> **Note:** {_m(n)}", "")]


def report_markdown(data: ReportData, figures: list[Rendered], folder: str, figures_left_out: str = "") -> str:
    """`figures_left_out`: the study folder, when the figures were not drawn (the report `search` writes)."""
    by_name = {f.name: f for f in figures}
    out = [f"# {_m(data.header.title)}", "", f"**{_m(verdict(data.headline))}**", ""]
    out += [table_md(headline_table(data.headline)), ""]
    out += [line for s in [baseline_line(data.headline), *explanation(data.headline)] for line in (_m(s), "")]
    if data.headline.alternatives:
        out += [
            "## Other training jobs",
            "",
            _m(ALTERNATIVES_NOTE),
            "",
            table_md(alternatives_table(data.headline)),
            "",
        ]
    if data.headline.changes:
        out += [
            "Knobs the pick changes from the DeepSpeed-Chat baseline:",
            "",
            table_md(changes_table(data.headline)),
            "",
        ]
    out += ["## Study", ""]
    out += [f"- **{_m(k)}:** {_m(v)}" for k, v in facts(data.header)] + [""]
    out += _notes(data.notes)
    out += [f"## Top {data.top_ranked} plans" if data.top.rows else "## Top plans", ""]
    out += [table_md(data.top) if data.top.rows else "No trial has finished within the memory cap.", ""]
    for name in ("throughput-memory", "phases", "history"):
        if name in by_name:
            out += _figure(by_name[name], folder)
    out += (
        _figure(by_name["importance"], folder)
        if "importance" in by_name
        else ["## Parameter importance", "", _m(data.importance.note) + ".", ""]
    )
    if data.importance.params:
        out += [table_md(importance_table(data.importance)), ""]
    if figures_left_out:
        out += ["## Figures", "", _m(FIGURES_LEFT_OUT.format(study=figures_left_out)), ""]
    out += _figure(by_name["accuracy"], folder) if "accuracy" in by_name else ["## Predicted against measured", ""]
    lines = accuracy_lines(data.accuracy)[1 if "accuracy" in by_name else 0 :]  # the caption already says line 0
    out += [line for a in lines for line in (_m(a), "")]
    return "\n".join(out).rstrip() + "\n"


def compare_markdown(data: CompareData, figures: list[Rendered], folder: str) -> str:
    out = ["# dstune compare: " + _m(", ".join(e.label for e in data.entries)), ""]
    out += _notes(data.notes[:-1])
    out += ["## Best plan per study", "", table_md(data.summary), ""]
    if data.gpu_hour_price is not None:
        out += [
            f"Cost per million tokens = {data.gpu_hour_price:g} USD per GPU-hour x GPUs / 3600 / tokens/s x 10^6.",
            "",
        ]
    for f in figures:
        out += _figure(f, folder)
    out += ["## Settings that differ", "", _m(data.notes[-1]), ""]
    if data.knobs.rows:
        out += [table_md(data.knobs), ""]
    return "\n".join(out).rstrip() + "\n"
