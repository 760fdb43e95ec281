"""DeepSpeed-Chat's shipped launch-script settings: the baseline every study starts from.

The scripts (DeepSpeedExamples applications/DeepSpeed-Chat/training/step*/training_scripts)
exist for a few model sizes and GPU counts; each step's strategy lists them
(`StepStrategy.baseline_scripts`). A baseline takes the script for the nearest size
(by log parameter count) and layout, keeps only the knobs dstune tunes, and overlays
the space's fixed workload (sequence lengths, dtype) so baseline and candidates do the same work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..catalog import ModelSpec
from ..errors import UserInputError
from ._knobs import Plan
from ._parse import make_plan
from ._rules import Context, RuleBreak, stack_violations, violations
from ._step import BaselineScript, step_strategy

_DSC = "DeepSpeed-Chat training/"


@dataclass(frozen=True)
class Baseline:
    """The shipped settings as a plan, where they came from, and what had to change."""

    plan: Plan
    script: str
    adjustments: tuple[str, ...] = ()
    cannot_run: tuple[RuleBreak, ...] = ()
    """Limits of the installed DeepSpeed the shipped settings break: still the baseline, never the pick."""


def nearest_script(step: str, model: ModelSpec, world: int) -> BaselineScript:
    billions = max(model.num_params / 1e9, 1e-6)
    scripts = step_strategy(step).baseline_scripts(model.family, world)
    return min(scripts, key=lambda s: abs(math.log(billions) - math.log(s.billions)))


def baseline_plan(
    step: str,
    model: ModelSpec,
    world: int,
    *,
    critic_model: ModelSpec | None = None,
    workload: Mapping[str, Any] | None = None,
) -> Baseline:
    """DeepSpeed-Chat's shipped settings for the nearest model size and GPU count, valid on `world` GPUs."""
    strategy = step_strategy(step)
    script = nearest_script(step, model, world)
    values: dict[str, Any] = {
        **strategy.lora_module_defaults(model.family, critic_model.family if critic_model else None),
        **script.values,
    }
    notes: list[str] = []
    strategy.adjust_baseline(values, world, notes)
    for name, value in (workload or {}).items():
        if values.get(name, value) != value:
            notes.append(f"{name} {values[name]} -> {value} (the space's workload)")
        values[name] = value
    plan = make_plan(step, values)
    ctx = Context(world_size=world, model=model, critic_model=critic_model)
    broken = violations(plan, ctx, stack=False)
    if broken:
        raise UserInputError(f"baseline {script.path} breaks rule {broken[0]} on {world} GPU(s)")
    path = f"{_DSC}{strategy.script.folder}/training_scripts/{script.path}"
    return Baseline(plan=plan, script=path, adjustments=tuple(notes), cannot_run=stack_violations(plan, ctx))
