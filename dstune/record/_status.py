"""Trial outcomes, one enum for every module that files or reads them."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """ok/oom/timeout/error/crashed come from the profiler (or a replay table); pruned: not run because
    the calibrated model was confident it would not fit; infeasible: breaks a hard rule, or is
    predicted over the memory cap (simulate)."""

    OK = "ok"
    """The only outcome that carries measurements (or, simulated, predictions under the cap)."""
    OOM = "oom"
    """The accelerator's allocator raised its out-of-memory error in some rank."""
    TIMEOUT = "timeout"
    """The trial ran past its time limit; its whole process group was killed."""
    ERROR = "error"
    """The worker raised something else; the trial's `error` holds the exception."""
    CRASHED = "crashed"
    """The processes ended without any result file (killed by a signal, launcher failure)."""
    PRUNED = "pruned"
    INFEASIBLE = "infeasible"

    def __str__(self) -> str:
        return self.value


MEASURED_STATUSES = (Status.OK, Status.OOM, Status.TIMEOUT, Status.ERROR, Status.CRASHED)
"""Outcomes of a plan that really ran (a replay table holds only these)."""
FAILED = (Status.OOM, Status.TIMEOUT, Status.ERROR, Status.CRASHED)
