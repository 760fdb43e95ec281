"""Which knobs move predicted throughput and peak memory, computed exactly over the whole scored grid.

A simulated study scores every candidate, so no sampler-based estimate is needed: each knob's first-order
main effect is the share of the grid's variance of log(target) that the knob's value alone explains,
Var_v(E[log y | knob = v]) / Var(log y), weighted by how many candidates take each value. It is exact for the
grid (every candidate counts once, in no order) and needs no model. fANOVA would fit a random forest to
points we already have in full and add sampling noise; the variance split is the same first-order quantity
without that step. Logs make a knob that halves throughput count the same at any scale. Shares need not sum
to 1: under 1, the rest is interaction between knobs (a knob that matters only when another is set); over 1,
the grid ties knobs together (a fixed batch ties the micro-batch to the accumulation steps), so they share
one effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

USER_ATTR = "grid_importance"
"""The study's user attribute holding the result, which the report reads from study.db."""


def _codes(column: np.ndarray) -> tuple[np.ndarray, int]:
    try:
        _, inverse = np.unique(column, return_inverse=True)
    except TypeError:  # mixed types (e.g. None beside strings): compare by text
        _, inverse = np.unique(np.array([repr(v) for v in column]), return_inverse=True)
    return inverse.ravel(), int(inverse.max()) + 1 if len(inverse) else 0


def main_effects(columns: Mapping[str, np.ndarray], target: np.ndarray) -> dict[str, float]:
    """Knob -> share of Var(log target) its value alone explains, over candidates with a positive finite target;
    largest first. Knobs with one value on the grid are left out (they cannot explain anything)."""
    keep = np.isfinite(target) & (target > 0)
    y = np.log(target[keep])
    total = float(y.var()) if len(y) > 1 else 0.0
    if total <= 0.0:
        return {}
    found = {}
    for name, column in columns.items():
        codes, levels = _codes(np.asarray(column)[keep])
        if levels < 2:
            continue
        counts = np.bincount(codes, minlength=levels)
        means = np.bincount(codes, weights=y, minlength=levels) / np.maximum(counts, 1)
        found[name] = float((counts * (means - y.mean()) ** 2).sum() / len(y) / total)
    return dict(sorted(found.items(), key=lambda item: -item[1]))


def grid_importance(columns: Mapping[str, np.ndarray], table: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Main effects on predicted samples/s and GPU peak memory over every scored candidate (plan.json-ready)."""
    sps = np.asarray(table["samples_per_s"], dtype=float)
    return {
        "method": "first-order main effects (variance split of log target by knob value) over the whole grid",
        "candidates": int(np.isfinite(sps).sum()),
        "throughput": main_effects(columns, sps),
        "memory": main_effects(columns, np.asarray(table["gpu_peak_bytes"], dtype=float)),
    }
