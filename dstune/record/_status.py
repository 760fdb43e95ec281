"""Trial outcomes, one enum for every module that files or reads them."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """ok/oom/timeout/error/crashed come from the profiler (or a replay table); pruned: not run because
    the calibrated model was confident it would not fit; infeasible: breaks a hard rule, or is
    predicted over the memory cap (simulate)."""

    OK = "ok"
    OOM = "oom"
    TIMEOUT = "timeout"
    ERROR = "error"
    CRASHED = "crashed"
    PRUNED = "pruned"
    INFEASIBLE = "infeasible"

    def __str__(self) -> str:
        return self.value


MEASURED_STATUSES = (Status.OK, Status.OOM, Status.TIMEOUT, Status.ERROR, Status.CRASHED)
"""Outcomes of a plan that really ran (a replay table holds only these)."""
FAILED = (Status.OOM, Status.TIMEOUT, Status.ERROR, Status.CRASHED)
