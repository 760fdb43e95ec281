"""One self-contained HTML page (inline CSS, figures as base64 PNG): nothing is fetched from anywhere.

Every value from the study directory goes through `_e` (html.escape), so a model
named `<script>` is shown, not run.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
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

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1100px;
padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.wide{overflow-x:auto}.note{background:#fff6d6;border-left:4px solid #e0b000;padding:.5rem .8rem;margin:.6rem 0}
.headline{font-size:1.05rem;font-weight:600}figure{margin:1rem 0}figure img{max-width:100%;height:auto}
figcaption{color:#555;font-size:.88rem;max-width:820px}dl.facts{display:grid;grid-template-columns:max-content 1fr;
gap:.15rem 1rem;margin:.6rem 0}dl.facts dt{font-weight:600}dl.facts dd{margin:0}footer{color:#777;font-size:.8rem;
margin-top:3rem}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def table_html(table: Table, numeric: Sequence[bool] | None = None) -> str:
    numeric = numeric or [c.kind in NUMERIC_KINDS for c in table.columns]
    head = "".join(f"<th>{_e(c.name)}</th>" for c in table.columns)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{_e(v)}</td>' if n else f"<td>{_e(v)}</td>" for v, n in zip(row, numeric))
        + "</tr>"
        for row in table.formatted()
    )
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _figure(f: Rendered) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    return (
        f'<h2 id="{_e(f.name)}">{_e(f.title)}</h2><figure><img src="data:image/png;base64,{data}" '
        f'alt="{_e(f.caption)}"><figcaption>{_e(f.caption)}</figcaption></figure>'
    )


def _notes(notes: Iterable[str]) -> str:
    return "".join(f'<p class="note">{_e(n)}</p>' for n in notes)


def _page(title: str, body: Iterable[str], footer: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        + "".join(body)
        + f"<footer>{_e(footer)}</footer></body></html>\n"
    )


def report_html(data: ReportData, figures: list[Rendered], figures_left_out: str = "") -> str:
    """`figures_left_out`: the study folder, when the figures were not drawn (the report `search` writes)."""
    drawn = {f.name for f in figures}
    by_name = {f.name: f for f in figures}
    parts = [
        f"<h1>{_e(data.header.title)}</h1>",
        f'<p class="headline">{_e(verdict(data.headline))}</p>',
        table_html(headline_table(data.headline), [False, True, True, True]),
        "".join(f"<p>{_e(line)}</p>" for line in [baseline_line(data.headline), *explanation(data.headline)]),
    ]
    if data.headline.alternatives:
        parts += [
            "<h2>Other training jobs</h2>",
            f"<p>{_e(ALTERNATIVES_NOTE)}</p>",
            table_html(alternatives_table(data.headline)),
        ]
    if data.headline.changes:
        parts += [
            "<p>Knobs the pick changes from the DeepSpeed-Chat baseline:</p>",
            table_html(changes_table(data.headline)),
        ]
    parts += [
        "<h2>Study</h2>",
        '<dl class="facts">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts(data.header)) + "</dl>",
        _notes(data.notes),
        f"<h2>Top {data.top_ranked} plans</h2>" if data.top.rows else "<h2>Top plans</h2>",
        table_html(data.top) if data.top.rows else "<p>No trial has finished within the memory cap.</p>",
    ]
    for name in ("throughput-memory", "phases", "history"):
        if name in drawn:
            parts.append(_figure(by_name[name]))
    parts += [
        _figure(by_name["importance"])
        if "importance" in drawn
        else f"<h2>Parameter importance</h2><p>{_e(data.importance.note)}.</p>"
    ]
    if data.importance.params:
        parts.append(table_html(importance_table(data.importance)))
    if figures_left_out:
        parts.append(f"<h2>Figures</h2><p>{_e(FIGURES_LEFT_OUT.format(study=figures_left_out))}</p>")
    parts.append(_figure(by_name["accuracy"]) if "accuracy" in drawn else "<h2>Predicted against measured</h2>")
    lines = accuracy_lines(data.accuracy)[1 if "accuracy" in drawn else 0 :]  # the caption already says line 0
    parts.append("".join(f"<p>{_e(line)}</p>" for line in lines))
    return _page(f"dstune report: {data.header.title}", parts, "Generated by dstune report from the study directory.")


def compare_html(data: CompareData, figures: list[Rendered]) -> str:
    title = "dstune compare: " + ", ".join(e.label for e in data.entries)
    parts = [f"<h1>{_e(title)}</h1>", _notes(data.notes[:-1]), "<h2>Best plan per study</h2>", table_html(data.summary)]
    if data.gpu_hour_price is not None:
        parts.append(
            f"<p>Cost per million tokens = {_e(f'{data.gpu_hour_price:g}')} USD per GPU-hour x GPUs "
            "/ 3600 / tokens/s x 10^6.</p>"
        )
    parts += [_figure(f) for f in figures]
    parts += ["<h2>Settings that differ</h2>", f"<p>{_e(data.notes[-1])}</p>"]
    if data.knobs.rows:
        parts.append(table_html(data.knobs))
    return _page(title, parts, "Generated by dstune compare from the study directories.")
