"""What a step's cost function reads: the candidates' column table and the setting they are scored in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..catalog import ClusterSpec, ModelSpec
from . import _time as tm
from ._constants import CostConstants

Columns = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class CostInputs:
    """What a step's cost function (its strategy's `cost_function`) scores: a column table of
    candidate plans for one model pair on one cluster, on hardware figures for their dtype."""

    cols: Columns
    model: ModelSpec
    critic_model: ModelSpec
    """The second model of a step that has one (PPO's critic); the actor otherwise."""
    cluster: ClusterSpec
    hw: tm.Hardware
    constants: CostConstants
    he_kernels: bool
    transformers_version: str = ""
    """The target stack's transformers ("" for the stack `constants.published_stack` selects; _stack.py)."""


def per_value(column: np.ndarray, fn: Any) -> np.ndarray:
    """Apply a scalar function once per distinct value of a column (strings, dtypes)."""
    if len(column) and (column == column[0]).all():  # the common case; np.unique sorts strings slowly
        return np.full(len(column), fn(column[0]), dtype=float)
    values, inverse = np.unique(column, return_inverse=True)
    return np.array([fn(v) for v in values], dtype=float)[inverse.reshape(-1)]
