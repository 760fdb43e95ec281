"""Ratio evidence: how well the cost model predicts one published plan against another.

A tuner's claim is a ratio (pick / baseline), and two plans of one job on one cluster share most
of their prediction error. So the speedup's interval is calibrated on ratios: for every pair of
rows a source measured on the same hardware (one table's ZeRO stages and micro-batches, Table 1's
sizes on one cluster), each row predicted by a fit without it, the predicted ratio is set against
the published one. Groups also agree on order or not (Kendall tau, within each group).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._conformal import KindInterval, comparisons, kind_interval

Z90 = 1.645
GROUPED_BY_MODEL = frozenset({"ds-autotuning-hf"})
"""Sources whose tables are one model each: a group is one table (its ZeRO stages and micro-batches)."""


@dataclass(frozen=True)
class Point:
    """One timed row: its group (source, hardware, metric, table) and published / predicted samples/s."""

    id: str
    group: tuple[str, ...]
    published: float
    predicted: float
    model: str = ""
    step: str = ""
    """With `model`, what makes a pair a plan change: the same model trained by the same step."""


@dataclass(frozen=True)
class PairEvidence:
    pairs: int
    groups: int
    geo_factor: float
    """exp(mean |log(predicted ratio / published ratio)|)."""
    worst_factor: float
    rms_log: float
    ranked: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...] = ()
    """(published, predicted) of each group of three or more rows, kept for `kendall_tau`."""

    @property
    def kendall_tau(self) -> float:
        """Mean over groups of three or more rows (tau of a pair is +-1 and says little), weighted by pairs.

        A property so that a search, which needs only the interval, never pays scipy.stats' import (~1 s)."""
        from scipy.stats import kendalltau

        taus = [(float(kendalltau(pub, pred).statistic), len(pub) * (len(pub) - 1) // 2) for pub, pred in self.ranked]
        taus = [(t, n) for t, n in taus if not math.isnan(t)]
        weight = sum(n for _, n in taus)
        return sum(t * n for t, n in taus) / weight if weight else float("nan")

    @property
    def interval_factor(self) -> float:
        """x/÷ factor of a 90% interval on a predicted ratio."""
        return math.exp(Z90 * self.rms_log)

    def backing(self) -> str:
        return f"90% interval from {self.pairs} published pairs"


def group_of(source: str, gpu_type: str, gpus: int, metric: str, model: str) -> tuple[str, ...]:
    """Rows one source measured on one cluster with one metric (and, for per-model tables, one model)."""
    key = (source, gpu_type, str(gpus), metric)
    return key + ((model,) if source in GROUPED_BY_MODEL else ())


def pair_evidence(points: Iterable[Point]) -> PairEvidence | None:
    """Pairwise ratio errors and rank agreement within each group; None without a single pair."""
    groups: dict[tuple[str, ...], list[Point]] = {}
    for p in points:
        groups.setdefault(p.group, []).append(p)
    errors: list[float] = []
    ranked: list[tuple[tuple[float, ...], tuple[float, ...]]] = []
    used = 0
    for members in groups.values():
        if len(members) < 2:
            continue
        used += 1
        for a, b in itertools.combinations(members, 2):
            errors.append(math.log(a.predicted / b.predicted) - math.log(a.published / b.published))
        if len(members) >= 3:
            ranked.append((tuple(m.published for m in members), tuple(m.predicted for m in members)))
    if not errors:
        return None
    absolute = [abs(e) for e in errors]
    return PairEvidence(
        pairs=len(errors),
        groups=used,
        geo_factor=math.exp(sum(absolute) / len(absolute)),
        worst_factor=math.exp(max(absolute)),
        rms_log=math.sqrt(sum(e * e for e in errors) / len(errors)),
        ranked=tuple(ranked),
    )


def ratio_interval(ratio: float, evidence: PairEvidence) -> tuple[float, float]:
    f = evidence.interval_factor
    return ratio / f, ratio * f


def is_tie(interval: Sequence[float]) -> bool:
    """An interval that includes 1 cannot tell the two plans apart."""
    return interval[0] <= 1.0 <= interval[1]


def points_from_fitted(fitted: dict, rows: Iterable, which: str = "left_out") -> list[Point]:
    """Fitted rows' held-out predictions (fitted.json's `rows`; `which` "left_out" or "left_out_source") joined
    to the corpus rows they name."""
    by_id = {r.id: r for r in rows}
    out = []
    for entry in fitted["rows"]:
        row = by_id.get(entry["id"])
        held_out = entry.get(which) or {}
        if row is None or not entry.get("in_fit") or not entry.get("published_samples_per_s"):
            continue
        if not held_out.get("samples_per_s"):
            continue
        out.append(
            Point(
                row.id,
                group_of(row.source, row.gpu_type, row.gpus, row.metric, row.model),
                float(entry["published_samples_per_s"]),
                float(held_out["samples_per_s"]),
                row.model,
                row.step,
            )
        )
    return out


def shipped_pair_evidence() -> PairEvidence | None:
    """Ratio evidence of the shipped fit (fitted.json), or None where it has no pair."""
    from ._evidence import load_corpus
    from ._shipped import load_fitted

    try:
        fitted = load_fitted()
    except (OSError, ValueError, KeyError):
        return None
    return pair_evidence(points_from_fitted(fitted, load_corpus()))


def shipped_kind_interval(kind: str) -> KindInterval | None:
    """The out-of-source interval of the shipped fit for one kind of change, or None without pairs."""
    from ._evidence import load_corpus
    from ._shipped import load_fitted

    try:
        fitted = load_fitted()
    except (OSError, ValueError, KeyError):
        return None
    found = comparisons(points_from_fitted(fitted, load_corpus(), "left_out_source"))
    return kind_interval(found, kind) if found else None


EVIDENCE_STEP = {"rm": "sft"}
"""Steps whose plan changes are backed by another step's published pairs: the reward model trains one model with
step 1's loop (costmodel/_sft.py scores both), so SFT's pairs back it. DPO (a policy and a reference) and PPO (four
models, generation) have their own evidence only."""


@functools.cache
def covered_changes(step: str) -> frozenset[str]:
    """Knobs that at least one published pair of `step`'s evidence changes while holding the model and cluster
    fixed (same-model pairs of a group, as `_conformal.comparisons` pairs them). A pick that differs
    from its baseline in any other knob has no calibrated speedup interval. Today: SFT's ZeRO stage and
    micro-batch (ds-autotuning-hf's GPT-2 tables); no RM, DPO or PPO pair holds the model fixed."""
    from ._evidence import load_corpus

    wanted = EVIDENCE_STEP.get(step, step)
    groups: dict[tuple[str, ...], list] = {}
    for row in load_corpus():
        if row.step == wanted and row.in_fit:
            groups.setdefault(group_of(row.source, row.gpu_type, row.gpus, row.metric, row.model), []).append(row)
    changed: set[str] = set()
    for members in groups.values():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                if a.model != b.model:
                    continue
                x, y = a.settings_dict, b.settings_dict
                changed |= {k for k in set(x) | set(y) if x.get(k) != y.get(k)}
    return frozenset(changed)
