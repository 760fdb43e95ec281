"""One trial of a study: the plan, its job, its outcome and its figures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._figures import Figures
from ._status import Status


@dataclass
class TrialRow:
    number: int
    status: Status
    source: str
    """baseline, sampler, simulate (scored over the whole grid), repeat, or an import's name."""
    values: dict[str, Any]
    predicted: Figures | None
    measured: Figures | None
    p_fit: float | None
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    job: str = ""
    """The job's label (dstune.plan.Job.label)."""

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    @property
    def fits(self) -> bool:
        return self.status == Status.OK

    @property
    def figures(self) -> Figures | None:
        """What the trial is judged on: its measurement where it has one, else its prediction."""
        return self.measured if self.measured is not None else self.predicted

    @property
    def samples_per_s(self) -> float | None:
        f = self.figures
        return f.samples_per_s if f else None

    def memory(self) -> float | None:
        """Measured peak where the backend measured one (CPU runs do not), else the prediction."""
        for figures in (self.measured, self.predicted):
            if figures is not None and figures.gpu_peak_bytes:
                return figures.gpu_peak_bytes
        return None

    def details_json(self) -> dict[str, Any]:
        return _jsonable(self.details)


def _jsonable(details: Mapping[str, Any]) -> dict[str, Any]:
    import json

    out = {}
    for k, v in details.items():
        try:
            json.dumps(v)
            out[k] = v
        except TypeError:
            out[k] = str(v)
    return out
