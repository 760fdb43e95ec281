"""An out-of-sample interval on a predicted speedup, from published pairs (issue 30).

Each row is predicted by a fit without its source (leave-one-source-out), so a pair's error is out of
sample. Within a group of k rows only k-1 comparisons are independent (consecutive rows), not every one of
the k(k-1)/2 combinations. The interval is split-conformal: the ceil((n+1) * 0.9)-th smallest absolute log
error of n comparisons, an empirical quantile with no normal approximation; too few comparisons give no
finite interval. A change of the same model's plan ("plan") and one of model or hardware ("model") are
calibrated on their own comparisons; a kind with too few falls back to all comparisons ("pooled").
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


@dataclass(frozen=True)
class Comparison:
    """Two rows of one group: its source, kind of change and log(predicted ratio / published ratio)."""

    source: str
    kind: str
    error: float


@dataclass(frozen=True)
class KindInterval:
    kind: str
    factor: float
    """x/÷ factor of the interval; inf where the comparisons are too few for the level."""
    comparisons: int
    sources: int
    pooled: bool
    """No finite interval from this kind's own comparisons: all kinds' comparisons back it."""

    def backing(self) -> str:
        what = "all kinds of change" if self.pooled else f"{self.kind} changes"
        return (
            f"{LEVEL:.0%} out-of-source interval from {self.comparisons} independent published comparisons "
            f"({what}, {self.sources} sources)"
        )


def comparisons(points: Iterable[_Point]) -> list[Comparison]:
    """Consecutive rows (by id) of each group: k-1 independent comparisons per group of k."""
    groups: dict[tuple[str, ...], list[_Point]] = {}
    for p in points:
        groups.setdefault(p.group, []).append(p)
    out = []
    for group, members in groups.items():
        members = sorted(members, key=lambda m: m.id)
        for a, b in zip(members, members[1:]):
            error = math.log(a.predicted / b.predicted) - math.log(a.published / b.published)
            out.append(Comparison(group[0], "plan" if a.model == b.model else "model", error))
    return out


def conformal_factor(errors: Sequence[float], level: float = LEVEL) -> float:
    """exp of the ceil((n+1) * level)-th smallest |error|; inf where n is too small for the level."""
    ranked = sorted(abs(e) for e in errors)
    k = math.ceil((len(ranked) + 1) * level)
    return math.inf if k > len(ranked) else math.exp(ranked[k - 1])


def kind_interval(found: Sequence[Comparison], kind: str, level: float = LEVEL) -> KindInterval:
    own = [c for c in found if c.kind == kind]
    factor = conformal_factor([c.error for c in own], level)
    if math.isfinite(factor):
        return KindInterval(kind, factor, len(own), len({c.source for c in own}), pooled=False)
    pooled = conformal_factor([c.error for c in found], level)
    return KindInterval(kind, pooled, len(found), len({c.source for c in found}), pooled=True)


def loso_coverage(found: Sequence[Comparison], level: float = LEVEL) -> tuple[int, int]:
    """(covered, total): each source's comparisons against the interval built from the other sources'
    comparisons of their kind. A comparison with no finite interval counts as not covered."""
    covered = total = 0
    for source in sorted({c.source for c in found}):
        others = [c for c in found if c.source != source]
        for c in (c for c in found if c.source == source):
            total += 1
            if others:
                covered += abs(c.error) <= math.log(kind_interval(others, c.kind, level).factor)
    return covered, total
