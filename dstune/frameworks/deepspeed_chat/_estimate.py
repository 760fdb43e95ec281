"""`dstune estimate`: the cost model's memory breakdown and phase times for one plan."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ...errors import UserInputError
from .._command import Command
from .._common import add_setup_arguments, add_stack_argument, gib, print_json, resolve_plan, resolve_setup
from .._inputs import check_argv, check_setup_flags

if TYPE_CHECKING:
    from ...costmodel import Estimate


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_setup_arguments(parser)
    add_stack_argument(parser)
    parser.add_argument(
        "--he-kernels",
        choices=("yes", "no", "auto"),
        default="auto",
        help="whether Hybrid Engine generation uses DeepSpeed's inference kernels; auto (default): "
        "what 'dstune doctor' finds for the model's family on this stack",
    )
    parser.add_argument(
        "--no-he-kernels",
        dest="he_kernels",
        action="store_const",
        const="no",
        help="same as --he-kernels no (the model's own generate(), as DeepSpeed 0.19.8 runs OPT with transformers 4.49-5.23)",
    )


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


def _run(args: argparse.Namespace) -> int:
    check_argv(args.argv)
    from ..openrlhf._commands import is_openrlhf, run_estimate

    if is_openrlhf(args):
        return run_estimate(args)
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
    factor = calibration.interval_factor
    if args.json:
        payload = result.to_json()
        payload["gpu_note"] = setup.gpu_note
        payload["he_kernels"] = he_kernels if uses_he else None
        payload["he_kernels_note"] = he_note or None
        payload["stack"] = stack.to_json()
        payload["broken_on_target_stack"] = [i.to_json() for i in issues]
        payload["throughput"]["samples_per_s_interval"] = [result.samples_per_s / factor, result.samples_per_s * factor]
        payload["calibration"] = calibration.backing
        payload["plan_basis"] = plan_basis(setup, plan)
        print_json(payload)
    else:
        note = setup.gpu_note + (f"; {he_note}" if uses_he else "")
        note += (
            f"; 90% interval {result.samples_per_s / factor:,.2f}-{result.samples_per_s * factor:,.2f} samples/s "
            f"({calibration.backing})"
        )
        print(stack_note)
        print(_basis_line(plan_basis(setup, plan)))
        for issue in issues:
            print(f"BROKEN ON STACK {stack.name} ({issue.id}): {issue.consequence}")
        render_estimate(result, note)
    return 0


COMMAND = Command(
    "estimate",
    "predict memory and throughput of one plan with the analytic cost model",
    _arguments,
    _run,
    description="Predict per-GPU memory by component, host memory, phase times, throughput and MFU\n"
    "of one DeepSpeed-Chat plan. Knobs use DeepSpeed-Chat's flag names, e.g.\n"
    "  dstune estimate --model opt-6.7b --gpus 8 --set actor_zero_stage=3 --set enable_hybrid_engine=true",
)
