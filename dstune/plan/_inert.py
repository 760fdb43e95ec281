"""Knobs that have no effect under other knobs' values.

DeepSpeed ignores them there, so two candidates that differ only in an inert knob are
the same run. The search keeps only the default value of an inert knob, so its
candidates (and runners-up) are distinct plans.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ._knobs import knob_fields
from ._step import step_strategy

Columns = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Inert:
    """`knob` has no effect on rows where `when` holds (it reads the `reads` columns)."""

    knob: str
    reads: tuple[str, ...]
    when: Callable[[Columns], np.ndarray]
    why: str


def redundant_rows(step: str, cols: Columns, varied: tuple[str, ...]) -> np.ndarray:
    """Rows that set an inert knob to a value other than its default: duplicates of another row.
    Only `varied` knobs count: a value the user fixed is kept whatever it is."""
    defaults = {f.name: f.default for f in knob_fields(step)}
    n = len(next(iter(cols.values())))
    out = np.zeros(n, dtype=bool)
    for rule in step_strategy(step).inert():
        if rule.knob in varied and rule.knob in cols and all(r in cols for r in rule.reads):
            out |= rule.when(cols) & (cols[rule.knob] != defaults[rule.knob])
    return out
