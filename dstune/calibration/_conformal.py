"""An out-of-sample interval on a predicted speedup, from published pairs (issue 30).

Each row is predicted by a fit without its source (leave-one-source-out), so a pair's error is out of
sample. Within a group of k rows only k-1 comparisons are independent, not the k(k-1)/2 combinations; which
k-1 (the consecutive rows of some order) is a choice, and sorting by id compared 30B with 6.7B and 175B with
30B where the published table reads 1.3B, 6.7B, 13B... So every pair counts with weight 2/k, the share of a
group's orders in which it is consecutive: k-1 in all, the expectation over every order. The interval is
split-conformal: the smallest absolute log error whose cumulative weight reaches (n+1) * 0.9 of n
comparisons, an empirical quantile with no normal approximation; too few comparisons give no finite
interval. A change of the same model's plan ("plan") and one of model or hardware ("model") are calibrated
on their own comparisons; a kind with too few falls back to all comparisons ("pooled").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

LEVEL = 0.90
KINDS = ("plan", "model")


class _Point(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def group(self) -> tuple[str, ...]: ...
    @property
    def published(self) -> float: ...
    @property
    def predicted(self) -> float: ...
    @property
    def model(self) -> str: ...
    @property
    def step(self) -> str: ...


@dataclass(frozen=True)
class Comparison:
    """Two rows of one group: its source, kind of change and log(predicted ratio / published ratio)."""

    source: str
    kind: str
    error: float
    weight: float = 1.0
    """2/k in a group of k rows: the group's pairs weigh k-1, its independent comparisons."""


@dataclass(frozen=True)
class KindInterval:
    kind: str
    factor: float
    """x/÷ factor of the interval; inf where the comparisons are too few for the level."""
    comparisons: float
    """Independent comparisons behind it (the summed weights)."""
    sources: int
    pooled: bool
    """No finite interval from this kind's own comparisons: all kinds' comparisons back it."""

    def backing(self) -> str:
        what = "all kinds of change" if self.pooled else f"{self.kind} changes"
        return (
            f"{LEVEL:.0%} out-of-source interval from {self.comparisons:.0f} independent published comparisons "
            f"({what}, {self.sources} sources)"
        )


def _groups(points: Iterable[_Point]) -> list[list[_Point]]:
    """Each group's rows, sorted by id."""
    groups: dict[tuple[str, ...], list[_Point]] = {}
    for p in points:
        groups.setdefault(p.group, []).append(p)
    return [sorted(members, key=lambda m: m.id) for members in groups.values()]


def _compare(a: _Point, b: _Point, weight: float) -> Comparison:
    error = math.log(a.predicted / b.predicted) - math.log(a.published / b.published)
    same_job = a.model == b.model and a.step == b.step
    return Comparison(a.group[0], "plan" if same_job else "model", error, weight)


def comparisons(points: Iterable[_Point]) -> list[Comparison]:
    """Every pair of rows of each group, weighted 2/k: k-1 independent comparisons per group of k, in no
    chosen order."""
    return [
        _compare(a, b, 2.0 / len(members))
        for members in _groups(points)
        for i, a in enumerate(members)
        for b in members[i + 1 :]
    ]


def consecutive_comparisons(points: Iterable[_Point]) -> list[Comparison]:
    """The single order this module used before every pair was weighted: rows sorted by id, each with the
    next, weight 1 (scripts/bench_accuracy.py prints its coverage beside the headline, so the change of
    method can be read against it)."""
    return [_compare(a, b, 1.0) for members in _groups(points) for a, b in zip(members, members[1:])]


def conformal_factor(errors: Sequence[float], level: float = LEVEL, weights: Sequence[float] | None = None) -> float:
    """exp of the smallest |error| whose cumulative weight reaches (n+1) * level, n the total weight (with unit
    weights the ceil((n+1) * level)-th smallest); inf where n is too small for the level."""
    weights = [1.0] * len(errors) if weights is None else list(weights)
    ranked = sorted(zip((abs(e) for e in errors), weights))
    needed = (sum(weights) + 1.0) * level - 1e-9
    cumulative = 0.0
    for error, weight in ranked:
        cumulative += weight
        if cumulative >= needed:
            return math.exp(error)
    return math.inf


def _factor(found: Sequence[Comparison], level: float) -> float:
    return conformal_factor([c.error for c in found], level, [c.weight for c in found])


def kind_interval(found: Sequence[Comparison], kind: str, level: float = LEVEL) -> KindInterval:
    own = [c for c in found if c.kind == kind]
    factor = _factor(own, level)
    if math.isfinite(factor):
        return KindInterval(kind, factor, sum(c.weight for c in own), len({c.source for c in own}), pooled=False)
    pooled = _factor(found, level)
    return KindInterval(kind, pooled, sum(c.weight for c in found), len({c.source for c in found}), pooled=True)


def loso_coverage(found: Sequence[Comparison], level: float = LEVEL) -> tuple[float, float]:
    """(covered, total) weight: each source's comparisons against the interval built from the other sources'
    comparisons of their kind. A comparison with no finite interval counts as not covered."""
    covered = total = 0.0
    for source in sorted({c.source for c in found}):
        others = [c for c in found if c.source != source]
        for c in (c for c in found if c.source == source):
            total += c.weight
            if others and abs(c.error) <= math.log(kind_interval(others, c.kind, level).factor):
                covered += c.weight
    return covered, total
