"""Cells of trials.csv and plan.json as plain values: compared, shown and serialised the same way everywhere."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """JSON-safe: named tuples -> objects, NaN -> null, numpy scalars -> Python, tuples -> lists."""
    if hasattr(value, "_asdict"):
        return jsonable(value._asdict())
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def scalar(value: Any) -> Any:
    """A CSV cell as the plain value a plan holds (numpy -> Python, 3.0 -> 3)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def same(a: Any, b: Any) -> bool:
    return str(scalar(a)).lower() == str(scalar(b)).lower()


def number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def show(value: Any) -> str:
    """A knob value as DeepSpeed-Chat's command line spells it (true/false, not True/False)."""
    value = scalar(value)
    return str(value).lower() if isinstance(value, bool) else str(value)
