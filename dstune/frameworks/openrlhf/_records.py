"""OpenRLHF's typed command records: what `estimate` and `search --framework openrlhf` came to. The
terminal, `--json` and plan.json all render these; the cost model's figures for a plan stay the row its
vectorised table gives (OpenRLHFTable.row), carried whole."""

from __future__ import annotations

import dataclasses
from typing import Any

from ...catalog import Stack

NAME = "openrlhf"

SPEEDUP_BASIS = (
    "both plans predicted by the same cost model: its training and weight-sync constants are "
    "fitted to the OpenRLHF paper's per-phase rows, every other OpenRLHF constant is a prior, and no published "
    "row measures two plans of one job, so no interval is given"
)
SEARCH_NOTE = "exhaustive over search_spaces/openrlhf.yaml, scored by the cost model (no trials)"


@dataclasses.dataclass(frozen=True, kw_only=True)
class OpenRLHFEstimate:
    model: str
    gpus: int
    gpu_type: str
    gpu_note: str
    estimator: str
    placement: str
    groups: dict[str, list[str]]
    plan: dict[str, Any]
    plan_basis: str
    parser_notes: list[str]
    known_issues: list[Any]
    figures: dict[str, Any]
    """The cost model's row: memory per group and phase, phase times, throughput, feasibility."""
    fitting_plan: dict[str, Any] | None = None
    """When the plan does not fit: the nearest plan that does."""
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        payload = {"framework": NAME, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}
        figures, fitting = payload.pop("figures"), payload.pop("fitting_plan")
        del payload["exit_code"]
        payload.update(figures)
        if not figures["feasible"]:
            payload["fitting_plan"] = fitting
        return payload

    def render(self) -> None:
        from ._render import render_plan

        render_plan(self.to_json(), title="estimate")


@dataclasses.dataclass(frozen=True, kw_only=True)
class OpenRLHFSearch:
    model: str
    gpus: int
    gpu_type: str
    estimator: str
    baseline_basis: str
    baseline: dict[str, Any]
    baseline_plan: dict[str, Any]
    candidates_scored: int
    refused_by_checks: Any
    placement: str
    groups: dict[str, list[str]]
    plan: dict[str, Any]
    flags: dict[str, Any]
    figures: dict[str, Any]
    """The pick's cost-model row."""
    speedup: float | None
    """Pick over baseline, both predicted; None when the baseline does not fit."""
    best_by_placement: dict[str, dict[str, Any]]
    job: str
    explore: list[str]
    alternatives: list[dict[str, Any]]
    launch_script: str
    openrlhf_version: str
    stack: Stack
    version_note: str | None
    known_issues: list[Any]
    pick_plan: Any = dataclasses.field(repr=False)
    """The OpenRLHFPlan picked (for the export; not printed)."""
    hub: str = ""
    """The actor's Hugging Face id, for the launch script."""
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        head = ("model", "gpus", "gpu_type", "estimator", "baseline_basis", "baseline", "baseline_plan")
        payload: dict[str, Any] = {"framework": NAME, **{k: getattr(self, k) for k in head}}
        payload.update(candidates_scored=self.candidates_scored, refused_by_checks=self.refused_by_checks)
        payload["search"] = SEARCH_NOTE
        payload.update(placement=self.placement, groups=self.groups, plan=self.plan, flags=self.flags)
        payload.update(self.figures)
        payload.update(speedup=self.speedup, best_by_placement=self.best_by_placement, speedup_basis=SPEEDUP_BASIS)
        tail = ("job", "explore", "alternatives", "launch_script", "openrlhf_version")
        payload.update({k: getattr(self, k) for k in tail})
        payload.update(stack=self.stack.to_json(), version_note=self.version_note, known_issues=self.known_issues)
        return payload

    def render(self) -> None:
        from ._render import render_alternatives, render_plan, render_speedup

        payload = self.to_json()
        render_plan(payload, title="pick")
        render_speedup(payload)
        render_alternatives(payload)


def placement_summary(table: Any) -> dict[str, dict[str, Any]]:
    """The fastest fitting plan of each placement (colocated, split, ...), as the report compares them."""
    from ._search import best_by_placement, busy_fraction

    placements = {}
    for placement, index in best_by_placement(table).items():
        best, plan = table.row(index), table.plans[index]
        placements[placement] = {
            "samples_per_s": best["samples_per_s"],
            "iteration_s": best["iteration_s"],
            "gpu_peak_bytes": best["gpu_peak_bytes"],
            "gpu_busy_fraction": busy_fraction(plan, best),
            "groups": {g: [*r, f"{plan.group_gpus(g)} GPUs"] for g, r in plan.groups().items()},
            "phases_s": best["phases_s"],
            "flags": plan.flags(),
        }
    return placements
