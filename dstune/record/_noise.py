"""How sure a measured figure is: 90% Student-t intervals from the spread of measured steps and runs.

Step times are skewed and a ratio is what a speedup states, so every interval is taken in log
space (always positive, symmetric in x/÷). A trial's throughput gets the t-interval of its
measured steps' mean log wall time. A speedup measured from pairs of runs (baseline, then pick,
one round after another) gets the t-interval of the mean log ratio over the pairs, which samples
run-to-run noise; from a single pair only the steps' spread is known (the two runs' intervals
combined), and it says so.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = 0.90
"""Two-sided coverage of every measured interval."""


def t_quantile(df: float) -> float:
    """Student-t quantile for a two-sided LEVEL interval with `df` degrees of freedom."""
    from scipy.special import stdtrit

    return float(stdtrit(df, 0.5 + LEVEL / 2))


def _logs(times: Sequence[float]) -> list[float] | None:
    if len(times) < 2 or any(not t > 0 or not math.isfinite(t) for t in times):
        return None
    return [math.log(t) for t in times]


def throughput_interval(samples_per_s: float, step_times: Sequence[float]) -> tuple[float, float] | None:
    """90% interval of a trial's samples/s from its measured steps' wall times (None under 2 steps)."""
    logs = _logs(step_times)
    if logs is None or not samples_per_s > 0:
        return None
    half = t_quantile(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return (samples_per_s * math.exp(-half), samples_per_s * math.exp(half))


@dataclass(frozen=True)
class MeasuredRatio:
    """pick / baseline throughput from real runs, with its 90% interval and how it was obtained."""

    value: float
    interval: tuple[float, float] | None
    backing: str


def paired_ratio(pairs: Sequence[tuple[float, float]]) -> MeasuredRatio | None:
    """From (baseline samples/s, pick samples/s) of runs made as pairs: the geometric mean ratio and the
    t-interval over the pairs' log ratios (None under 2 pairs)."""
    if len(pairs) < 2 or any(not (b > 0 and p > 0) for b, p in pairs):
        return None
    logs = [math.log(p / b) for b, p in pairs]
    mean = statistics.fmean(logs)
    half = t_quantile(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    backing = f"90% t-interval over {len(pairs)} interleaved baseline/pick runs"
    return MeasuredRatio(math.exp(mean), (math.exp(mean - half), math.exp(mean + half)), backing)


def run_ratio(
    base_sps: float,
    base_interval: tuple[float, float] | None,
    pick_sps: float,
    pick_interval: tuple[float, float] | None,
    where: str,
) -> MeasuredRatio | None:
    """pick / baseline of one run each; the two runs' own 90% log half-widths (from their steps) add in
    quadrature. That samples only the steps' spread, not run-to-run noise: `where` names the runs and
    the backing says so."""
    if base_interval is None or pick_interval is None or not (base_sps > 0 and pick_sps > 0):
        return None
    halves = [math.log(hi / lo) / 2 for lo, hi in (base_interval, pick_interval)]
    half = math.hypot(*halves)
    value = pick_sps / base_sps
    backing = f"90% interval from the measured steps of {where}; run-to-run noise not sampled"
    return MeasuredRatio(value, (value * math.exp(-half), value * math.exp(half)), backing)
