"""`dstune estimate` for DeepSpeed-Chat: the cost model's memory breakdown and phase times for one plan."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ...errors import UserInputError
from .._common import gib
from .._inputs import check_argv
from ._options import EstimateOptions
from ._setup import check_setup_flags, resolve_plan, resolve_setup

if TYPE_CHECKING:
    from ...catalog import Stack
    from ...costmodel import Estimate
    from ...doctor import KnownIssue


def render_estimate(estimate: Estimate, note: str) -> None:
    """Rich tables of one Estimate: memory by component, time by phase, throughput."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    e = estimate
    console = Console()
    console.print(
        f"[bold]{escape(e.model)}[/bold] "
        + escape(f"{e.step.upper()} on {e.gpus} x {e.gpu_type} ({e.nodes} node(s)); {note}")
    )
    if e.critic_model:
        console.print(f"critic/reward model: {e.critic_model}", markup=False)
    if e.trainable_params:
        trained = ", ".join(f"{role} {count / 1e9:.3f}B" for role, count in e.trainable_params.items())
        console.print(f"trainable parameters: {trained}", markup=False)
    memory = Table(title=f"GPU memory per GPU (peak during {e.peak_phase})")
    memory.add_column("component")
    memory.add_column("bytes", justify="right")
    memory.add_column("share", justify="right")
    for name, value in e.gpu_memory.items():
        memory.add_row(escape(name), gib(value), f"{value / e.gpu_peak_bytes:.0%}")
    memory.add_row("[bold]peak[/bold]", f"[bold]{gib(e.gpu_peak_bytes)}[/bold]", f"of {gib(e.gpu_capacity_bytes)}")
    memory.add_row("host peak / node", gib(e.host_peak_bytes), f"of {gib(e.host_capacity_bytes)}")
    console.print(memory)
    phases = Table(title="time per step")
    phases.add_column("phase")
    phases.add_column("seconds", justify="right")
    phases.add_column("share", justify="right")
    dominant = max(e.phases, key=lambda name: e.phases[name])
    for name, seconds in e.phases.items():
        style = "bold" if name == dominant else ""
        phases.add_row(escape(name), f"{seconds:.3f}", f"{seconds / e.step_s:.0%}", style=style)
    phases.add_row("[bold]total[/bold]", f"[bold]{e.step_s:.3f}[/bold]", "")
    console.print(phases)
    verdict = "[green]feasible[/green]" if e.feasible else "[red]infeasible: " + escape("; ".join(e.reasons)) + "[/red]"
    if e.feasible and e.warnings:
        verdict = "[yellow]feasible, tight: " + escape("; ".join(e.warnings)) + "[/yellow]"
    console.print(f"{e.samples_per_s:,.2f} samples/s, {e.tokens_per_s:,.0f} tokens/s, MFU {e.mfu:.1%}; {verdict}")


def plan_basis(setup: Any, plan: Any) -> dict[str, Any]:
    """The plan's knobs that differ from main.py's defaults, and the shipped script it is not."""
    from ...plan import make_plan, nearest_script, plan_to_dict

    defaults = plan_to_dict(make_plan(setup.step, {}))
    values = plan_to_dict(plan)
    changed = {k: v for k, v in values.items() if defaults.get(k) != v}
    try:
        script = nearest_script(setup.step, setup.model, setup.cluster.world_size).path
    except (ValueError, UserInputError):
        script = None
    kept = {k: values[k] for k in _HEADLINE_KNOBS if k in values and k not in changed}
    return {
        "basis": "DeepSpeed-Chat main.py defaults",
        "non_default_knobs": changed,
        "defaults_kept": kept,
        "nearest_shipped_script": script,
    }


_HEADLINE_KNOBS = (
    "zero_stage",
    "actor_zero_stage",
    "critic_zero_stage",
    "enable_hybrid_engine",
    "lora_dim",
    "actor_lora_dim",
    "critic_lora_dim",
)
"""The defaults that decide memory most; named so a default ZeRO-0 plan never reads as a tuned one."""


def _basis_line(basis: dict[str, Any]) -> str:
    changed = basis["non_default_knobs"]
    knobs = ", ".join(f"{k}={v}" for k, v in changed.items())
    text = f"plan: main.py's defaults except {knobs}" if changed else "plan: DeepSpeed-Chat main.py's defaults"
    if basis["defaults_kept"]:
        text += " (" + ", ".join(f"{k}={v}" for k, v in basis["defaults_kept"].items()) + ")"
    if basis["nearest_shipped_script"]:
        text += f", not the shipped script ({basis['nearest_shipped_script']}: 'dstune search' starts from it)"
    return text


def run_estimate(args: EstimateOptions) -> EstimateOutcome:
    check_argv(list(args.argv))
    check_setup_flags(args)
    setup = resolve_setup(args)
    from ...doctor import target_stack

    stack, stack_note = target_stack(args.stack, "simulate", setup.model.family)
    plan = resolve_plan(setup, args.assignments, stack)
    from ...catalog import target_transformers
    from ...costmodel import estimate

    uses_he = bool(getattr(plan, "enable_hybrid_engine", False))
    he_kernels, he_note, issues = True, "", []
    if uses_he:
        from ...doctor import match_known_issues, resolve_he_kernels
        from ...plan import plan_to_dict

        he_kernels, he_note = resolve_he_kernels(args.he_kernels, setup.model.family, stack)
        values = plan_to_dict(plan)
        issues = [i for i in match_known_issues(values, setup.model, stack) if i.severity == "broken"]
    from ...calibration import calibration_for

    calibration = calibration_for(setup.cluster.gpu.name, step=setup.step)
    constants = calibration.constants
    if stack.eager_attention is not None:
        constants = replace(constants, published_stack=1.0 if stack.eager_attention else 0.0)
    result = estimate(
        plan,
        setup.model,
        setup.cluster,
        critic_model=setup.critic_model,
        he_kernels=he_kernels,
        constants=constants,
        transformers_version=target_transformers(stack),
    )
    return EstimateOutcome(
        estimate=result,
        gpu_note=setup.gpu_note,
        he_kernels=he_kernels if uses_he else None,
        he_note=he_note,
        stack=stack,
        stack_note=stack_note,
        broken=tuple(issues),
        interval_factor=calibration.interval_factor,
        calibration=calibration.backing,
        plan_basis=plan_basis(setup, plan),
    )


@dataclass(frozen=True, kw_only=True)
class EstimateOutcome:
    """`dstune estimate`'s one record: the cost model's Estimate and what it was made under."""

    estimate: Estimate
    gpu_note: str
    he_kernels: bool | None
    """None: the plan runs no Hybrid Engine."""
    he_note: str
    stack: Stack
    stack_note: str
    broken: tuple[KnownIssue, ...]
    """Known issues the plan hits on the target stack, severity broken."""
    interval_factor: float
    calibration: str
    plan_basis: dict[str, Any]
    exit_code: int = 0

    @property
    def interval(self) -> tuple[float, float]:
        sps = self.estimate.samples_per_s
        return sps / self.interval_factor, sps * self.interval_factor

    def to_json(self) -> dict[str, Any]:
        payload = self.estimate.to_json()
        payload["gpu_note"] = self.gpu_note
        payload["he_kernels"] = self.he_kernels
        payload["he_kernels_note"] = self.he_note or None
        payload["stack"] = self.stack.to_json()
        payload["broken_on_target_stack"] = [i.to_json() for i in self.broken]
        payload["throughput"]["samples_per_s_interval"] = list(self.interval)
        payload["calibration"] = self.calibration
        payload["plan_basis"] = self.plan_basis
        return payload

    def render(self) -> None:
        note = self.gpu_note + (f"; {self.he_note}" if self.he_kernels is not None else "")
        low, high = self.interval
        note += f"; 90% interval {low:,.2f}-{high:,.2f} samples/s ({self.calibration})"
        print(self.stack_note)
        print(_basis_line(self.plan_basis))
        for issue in self.broken:
            print(f"BROKEN ON STACK {self.stack.name} ({issue.id}): {issue.consequence}")
        render_estimate(self.estimate, note)
