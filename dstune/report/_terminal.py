"""A short rich summary for the terminal; the full report is the HTML/Markdown file."""

from __future__ import annotations

from pathlib import Path

from ._compare import CompareData
from ._records import ReportData
from ._sections import accuracy_lines, alternatives_table, changes_table, explanation, headline_table, verdict
from ._table import NUMERIC_KINDS, Table


def _rich_table(table: Table, title: str, skip: tuple[str, ...] = ()) -> object:
    from rich.markup import escape
    from rich.table import Table as RichTable

    keep = [i for i, c in enumerate(table.columns) if c.name not in skip]
    out = RichTable(title=escape(title))
    for i in keep:
        c = table.columns[i]
        out.add_column(
            escape(c.name),
            justify="right" if c.kind in NUMERIC_KINDS else "left",
            no_wrap=c.kind in NUMERIC_KINDS,
            overflow="fold",
        )
    for row in table.formatted():
        out.add_row(*(escape(row[i]) for i in keep))
    return out


def print_report_summary(data: ReportData, written: list[Path]) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    console.print(
        f"[bold]{escape(data.header.title)}[/bold] ({escape(data.header.backend)}, "
        f"{sum(n for _, n in data.header.status_counts)} trials)"
    )
    console.print(verdict(data.headline), style="bold", markup=False, highlight=False)
    console.print(_rich_table(headline_table(data.headline), "baseline and pick"))
    for line in explanation(data.headline):
        console.print(line, markup=False, highlight=False)
    for note in data.notes:
        console.print(f"[yellow]{escape(note)}[/yellow]")
    if data.top.rows:
        console.print(
            _rich_table(
                data.top,
                f"top {data.top_ranked} plans (knobs in the HTML/Markdown report)",
                skip=("source", "basis", "MFU", "settings"),
            )
        )
        for row in data.top.rows:
            if row[0] is None:
                console.print(f"trial {row[1]} (no rank): {row[-1]}", markup=False, highlight=False)
    if data.headline.alternatives:
        console.print(_rich_table(alternatives_table(data.headline), "other training jobs (not like for like)"))
    if data.headline.changes:
        console.print(_rich_table(changes_table(data.headline), "knobs the pick changes from the baseline"))
    if data.importance.params:
        top = ", ".join(f"{k} {v:.2f}" for k, v in data.importance.params[:5])
        console.print(f"most important knobs: {escape(top)}")
    for line in accuracy_lines(data.accuracy)[1:]:
        console.print(escape(line))
    for path in written:
        console.print(f"wrote {escape(str(path))}")


def print_compare_summary(data: CompareData, written: list[Path]) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    for note in data.notes[:-1]:
        console.print(f"[yellow]{escape(note)}[/yellow]")
    console.print(_rich_table(data.summary, "best plan per study"))
    if data.knobs.rows:
        console.print(_rich_table(data.knobs, "settings that differ"))
    for path in written:
        console.print(f"wrote {escape(str(path))}")
