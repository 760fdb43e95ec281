"""What a backend says about one plan; the study's own rows live in dstune.record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..record import Figures, Status, TrialRow

STATUSES = tuple(s.value for s in Status)


@dataclass(frozen=True)
class TrialRecord:
    """One backend answer: `figures.basis` says whether it was measured (profile, replay) or predicted (simulate)."""

    status: Status
    figures: Figures | None = None
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Backend extras: trial_dir, he_kernels, versions, device, wall_s."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))

    @property
    def measured(self) -> Figures | None:
        return self.figures if self.figures is not None and self.figures.basis == "measured" else None


__all__ = ["STATUSES", "Figures", "Status", "TrialRecord", "TrialRow"]
