"""The frozen records one study report is made of: every figure and table, computed once.

As in Optuna's visualization, data comes first and renderers (HTML, Markdown,
PNG, terminal, JSON) only draw it, so all formats show the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, NamedTuple

from ._importance import Importance
from ._table import Table
from ._values import jsonable


class PlanFigures(NamedTuple):
    """One plan's knobs and figures; `basis` is 'measured' or 'predicted'."""

    label: str
    knobs: dict[str, Any]
    samples_per_s: float
    tokens_per_s: float
    gpu_peak_bytes: float
    step_s: float
    phases: tuple[tuple[str, float], ...]
    mfu: float
    basis: str


class Header(NamedTuple):
    title: str
    model: str
    critic_model: str | None
    step: str
    gpus: int
    nodes: int | None
    gpu_type: str
    backend: str
    study: str | None
    created: str | None
    versions: tuple[tuple[str, str], ...]
    status_counts: tuple[tuple[str, int], ...]
    devices: tuple[str, ...]


class Alternative(NamedTuple):
    """The pick of another class of training job (`--explore`), against the baseline's settings on that job."""

    job_class: str
    job: str
    trial: int | None
    samples_per_s: float
    basis: str
    speedup: float | None
    speedup_interval: tuple[float, float] | None


class Headline(NamedTuple):
    """Baseline against the pick, on one basis (both measured, or both predicted), for one training job."""

    baseline: PlanFigures | None
    pick: PlanFigures | None
    baseline_status: str | None
    baseline_source: str | None
    speedup: float | None
    memory_cap_bytes: float | None
    headroom_bytes: float | None
    changes: tuple[tuple[str, Any, Any], ...]
    job: str | None = None
    speedup_interval: tuple[float, float] | None = None
    alternatives: tuple[Alternative, ...] = ()
    baseline_issues: tuple[str, ...] = ()
    """Known issues of severity broken the baseline hits on the target stack, as 'id: consequence'."""
    baseline_ran_on_cpu: bool = False
    """The baseline was measured on DeepSpeed's CPU accelerator, which takes none of a GPU stack's broken paths."""
    speedup_uncalibrated: str | None = None
    """plan.json's reason a predicted speedup has no interval ('uncalibrated: ...'), where it says one."""
    verdict: str | None = None
    """The search's one-line verdict (plan.json `verdict`), the line the terminal and launch script print."""
    stack: str | None = None
    """The target stack's label, e.g. 'he (deepspeed 0.19.8, transformers 4.48.3)'; None: not recorded."""
    search_notes: tuple[str, ...] = ()
    """The search's notes (stacks compared, known issues hit, what predictions assume), in plain text."""


class Point(NamedTuple):
    number: int
    status: str
    source: str
    gpu_peak_bytes: float
    samples_per_s: float


class Scatter(NamedTuple):
    points: tuple[Point, ...]
    front: tuple[tuple[float, float], ...]
    memory_cap_bytes: float | None
    pick_number: int | None
    baseline_number: int | None
    undrawn: int
    baseline_broken: bool = False
    """The baseline is broken on the target stack: drawn and labelled as the reference, left off the front."""


class PhaseBar(NamedTuple):
    """Seconds per 1,000 samples spent in each phase: comparable across batch sizes."""

    label: str
    seconds_per_ksample: tuple[float, ...]
    step_s: float


class Phases(NamedTuple):
    names: tuple[str, ...]
    bars: tuple[PhaseBar, ...]


class History(NamedTuple):
    numbers: tuple[int, ...]
    values: tuple[float, ...]
    best: tuple[float, ...]
    baseline: float | None


class Accuracy(NamedTuple):
    """Cost model against measurement, over trials that have both."""

    throughput: tuple[tuple[float, float], ...]
    memory: tuple[tuple[float, float], ...]
    throughput_mape: float | None
    memory_mape: float | None
    spearman: float | None
    ooms_measured: int
    ooms_predicted: int
    note: str


@dataclass(frozen=True)
class ReportData:
    header: Header
    notes: tuple[str, ...]
    headline: Headline
    top: Table
    scatter: Scatter
    phases: Phases
    history: History
    importance: Importance
    accuracy: Accuracy

    @property
    def top_ranked(self) -> int:
        """Ranked rows of the top table (a broken baseline's reference row has no rank)."""
        return sum(1 for row in self.top.rows if row[0] is not None)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["top"] = self.top.to_json()
        return jsonable(out)
