"""Typed outcomes of one evaluated plan, and their flat / nested JSON forms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("ok", "oom", "timeout", "error", "crashed", "pruned", "infeasible")
"""ok/oom/timeout/error/crashed come from the profiler (or a replay table); pruned: not run because
the calibrated model was confident it would not fit; infeasible: breaks a hard rule, or (simulate)
is predicted over the memory cap."""


@dataclass(frozen=True)
class Figures:
    """Throughput, memory and time of one plan (measured or predicted)."""

    samples_per_s: float
    tokens_per_s: float
    gpu_peak_bytes: float | None
    step_s: float
    phases: Mapping[str, float] = field(default_factory=dict)
    mfu: float | None = None

    def flat(self, prefix: str) -> dict[str, Any]:
        row = {f"{prefix}_samples_per_s": self.samples_per_s, f"{prefix}_tokens_per_s": self.tokens_per_s,
               f"{prefix}_gpu_peak_bytes": self.gpu_peak_bytes, f"{prefix}_step_s": self.step_s,
               f"{prefix}_mfu": self.mfu}
        row.update({f"{prefix}_time_{k}": v for k, v in self.phases.items()})
        return row

    def to_json(self) -> dict[str, Any]:
        """The `dstune estimate --json` layout (throughput / memory / time / mfu)."""
        return {
            "throughput": {"samples_per_s": self.samples_per_s, "tokens_per_s": self.tokens_per_s},
            "memory": {"gpu_peak_bytes": None if self.gpu_peak_bytes is None else int(self.gpu_peak_bytes)},
            "time": {"step_s": self.step_s, "phases": dict(self.phases)},
            "mfu": self.mfu,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "Figures | None":
        if not data:
            return None
        peak = data["memory"].get("gpu_peak_bytes")
        return cls(samples_per_s=float(data["throughput"]["samples_per_s"]),
                   tokens_per_s=float(data["throughput"]["tokens_per_s"]),
                   gpu_peak_bytes=None if peak is None else float(peak),
                   step_s=float(data["time"]["step_s"]), phases=dict(data["time"]["phases"]),
                   mfu=None if data.get("mfu") is None else float(data["mfu"]))

    @classmethod
    def of_estimate(cls, estimate: Any) -> "Figures":
        return cls(samples_per_s=estimate.samples_per_s, tokens_per_s=estimate.tokens_per_s,
                   gpu_peak_bytes=estimate.gpu_peak_bytes, step_s=estimate.step_s, phases=dict(estimate.phases),
                   mfu=estimate.mfu)


@dataclass(frozen=True)
class TrialRecord:
    """What a backend says about one plan."""

    status: str
    measured: Figures | None = None
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Backend extras: trial_dir, he_kernels, versions, device, wall_s."""
