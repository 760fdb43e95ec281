"""A measured speedup and its noise: pairs of baseline and pick runs re-measured after the search.

The search's own trials of the baseline and the pick ran at different times, and the pick is the
best of many noisy measurements (so its own figure tends to be high). After the search the profile
backend measures the two again, alternately, one round after another (`--confirm-rounds`,
dstune.search.confirm_pick); each round is a pair. The speedup is the geometric mean of the pairs'
ratios with a t-interval over them; with one pair, or none, only the steps' spread is known and the
interval says so (dstune.record._noise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..record import MeasuredRatio, Status, TrialRow, paired_ratio, run_ratio

CONFIRM = "confirm"
"""The `source` of a trial that re-measures the baseline or the pick; it never proposes a new plan."""


def confirm_pairs(
    rows: Sequence[TrialRow], base_values: Mapping[str, Any], pick_values: Mapping[str, Any]
) -> list[tuple[TrialRow, TrialRow]]:
    """(baseline run, pick run) of every finished confirmation round, in round order."""
    rounds: dict[int, dict[str, TrialRow]] = {}
    for row in rows:
        if row.source != CONFIRM or row.status != Status.OK or row.measured is None:
            continue
        role = "base" if row.values == dict(base_values) else "pick" if row.values == dict(pick_values) else None
        if role is not None and isinstance(row.details.get("round"), int):
            rounds.setdefault(row.details["round"], {})[role] = row
    return [(r["base"], r["pick"]) for _, r in sorted(rounds.items()) if len(r) == 2]


def _figures(row: TrialRow) -> tuple[float, tuple[float, float] | None]:
    assert row.measured is not None  # callers pass measured rows only
    return row.measured.samples_per_s, row.measured.samples_per_s_interval


def measured_ratio(pick: TrialRow, base: TrialRow, rows: Sequence[TrialRow]) -> MeasuredRatio | None:
    """pick / baseline from the confirmation pairs where there are two or more, else from one pair's (or
    the search's own two trials') steps; None when a run has no measured interval (under 2 steps, old tables)."""
    pairs = confirm_pairs(rows, base.values, pick.values)
    if len(pairs) >= 2:
        return paired_ratio([(_figures(b)[0], _figures(p)[0]) for b, p in pairs])
    if pairs:
        b, p = pairs[0]
        where = f"one interleaved pair (trials {b.number}, {p.number})"
    else:
        b, p = base, pick
        where = (
            f"the search's trials {b.number} and {p.number} (not re-measured: the pick was the best of the "
            "search's noisy measurements, so this ratio may be high)"
        )
    return run_ratio(*_figures(b), *_figures(p), where)
