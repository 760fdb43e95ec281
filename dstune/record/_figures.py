"""Throughput, memory and time of one plan, with the basis they rest on and, for predictions, an interval."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

INTERVAL_Z = 1.645
"""Two-sided 90% interval of a normal in log space."""


class Basis(str, Enum):
    MEASURED = "measured"
    PREDICTED = "predicted"

    def __str__(self) -> str:
        return self.value


def interval_from_log(log_mean: float, log_sd: float) -> tuple[float, float]:
    """90% interval of a log-normal prediction."""
    return (math.exp(log_mean - INTERVAL_Z * log_sd), math.exp(log_mean + INTERVAL_Z * log_sd))


@dataclass(frozen=True, kw_only=True)
class Figures:
    """One plan's figures. `basis` says whether they were measured or predicted; a predicted
    throughput carries a 90% interval where the model's uncertainty is known."""

    basis: Basis
    samples_per_s: float
    tokens_per_s: float
    gpu_peak_bytes: float | None
    step_s: float
    phases: Mapping[str, float] = field(default_factory=dict)
    mfu: float | None = None
    samples_per_s_interval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "basis", Basis(self.basis))

    def flat(self) -> dict[str, Any]:
        """trials.csv columns, prefixed with the basis (predicted_* or measured_*)."""
        p = self.basis.value
        row = {
            f"{p}_samples_per_s": self.samples_per_s,
            f"{p}_tokens_per_s": self.tokens_per_s,
            f"{p}_gpu_peak_bytes": self.gpu_peak_bytes,
            f"{p}_step_s": self.step_s,
            f"{p}_mfu": self.mfu,
        }
        if self.samples_per_s_interval is not None:
            row[f"{p}_samples_per_s_lo"], row[f"{p}_samples_per_s_hi"] = self.samples_per_s_interval
        row.update({f"{p}_time_{k}": v for k, v in self.phases.items()})
        return row

    def to_json(self) -> dict[str, Any]:
        """The `dstune estimate --json` layout (throughput / memory / time / mfu) plus basis and interval."""
        interval = list(self.samples_per_s_interval) if self.samples_per_s_interval else None
        return {
            "basis": self.basis.value,
            "throughput": {
                "samples_per_s": self.samples_per_s,
                "tokens_per_s": self.tokens_per_s,
                "samples_per_s_interval": interval,
            },
            "memory": {"gpu_peak_bytes": None if self.gpu_peak_bytes is None else int(self.gpu_peak_bytes)},
            "time": {"step_s": self.step_s, "phases": dict(self.phases)},
            "mfu": self.mfu,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Figures | None:
        if not data:
            return None
        peak = data["memory"].get("gpu_peak_bytes")
        interval = data["throughput"].get("samples_per_s_interval")
        return cls(
            basis=Basis(data["basis"]),
            samples_per_s=float(data["throughput"]["samples_per_s"]),
            tokens_per_s=float(data["throughput"]["tokens_per_s"]),
            gpu_peak_bytes=None if peak is None else float(peak),
            step_s=float(data["time"]["step_s"]),
            phases=dict(data["time"]["phases"]),
            mfu=None if data.get("mfu") is None else float(data["mfu"]),
            samples_per_s_interval=tuple(interval) if interval else None,
        )

    @classmethod
    def of_estimate(cls, estimate: Any, interval: tuple[float, float] | None = None) -> Figures:
        """A cost-model estimate as predicted figures."""
        return cls(
            basis=Basis.PREDICTED,
            samples_per_s=estimate.samples_per_s,
            tokens_per_s=estimate.tokens_per_s,
            gpu_peak_bytes=estimate.gpu_peak_bytes,
            step_s=estimate.step_s,
            phases=dict(estimate.phases),
            mfu=estimate.mfu,
            samples_per_s_interval=interval,
        )
