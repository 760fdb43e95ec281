"""A table of raw values with a display kind per column, so HTML, Markdown, rich and JSON share it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["text", "num", "int", "rate", "gib", "seconds", "percent", "delta", "ratio", "usd", "bool"]
NUMERIC_KINDS = frozenset({"num", "int", "rate", "gib", "seconds", "percent", "delta", "ratio", "usd"})


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind = "text"


@dataclass(frozen=True)
class Table:
    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]

    def formatted(self) -> list[list[str]]:
        return [[format_value(v, c.kind) for v, c in zip(row, self.columns)] for row in self.rows]

    def to_json(self) -> list[dict[str, Any]]:
        return [{c.name: v for c, v in zip(self.columns, row)} for row in self.rows]


def missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_value(value: Any, kind: Kind = "text") -> str:
    """Human units: GiB with 1 decimal, rates with 3 significant figures, shares as percents.
    "num" is a value already formatted (right-aligned like a number)."""
    if missing(value):
        return "–"
    if kind == "num":
        return str(value)
    if kind == "int":
        return f"{int(value):,}"
    if kind == "rate":
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if kind == "gib":
        return f"{value / 2**30:,.1f} GiB"
    if kind == "seconds":
        return f"{value:,.1f} s" if abs(value) >= 10 else f"{value:.3g} s"
    if kind == "percent":
        return f"{value:.1%}" if value == 0 or abs(value) >= 0.001 else "<0.1%"
    if kind == "delta":  # a relative difference: small gaps between runners-up must stay visible
        return f"{value:+.2%}" if abs(value) < 0.1 else f"{value:+.0%}"
    if kind == "ratio":
        return f"{value:.2f}x"
    if kind == "usd":
        return f"${value:,.2f}" if abs(value) >= 0.1 else f"${value:.3g}"
    if kind == "bool":
        return "yes" if value else "no"
    return str(value)
