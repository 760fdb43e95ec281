"""DeepSpeed-Chat's shipped launch-script settings: the baseline every study starts from.

The scripts (DeepSpeedExamples applications/DeepSpeed-Chat/training/step*/training_scripts)
exist for a few model sizes and GPU counts; a baseline takes the script for the
nearest size (by log parameter count) and layout (single GPU, single node,
multi node), keeps only the knobs dstune tunes, and overlays the space's fixed
workload (sequence lengths, dtype) so baseline and candidates do the same work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..catalog import ModelSpec
from ..errors import UserInputError
from ..plan import Context, Plan, make_plan, violations
from ._space import lora_defaults

_DSC = "DeepSpeed-Chat training/"


@dataclass(frozen=True)
class Script:
    path: str
    billions: float
    values: Mapping[str, Any]


_HE = {"enable_hybrid_engine": True}
_PPO_BATCH_4 = {"per_device_generation_batch_size": 4, "per_device_training_batch_size": 4}

_PPO_OPT_NODE = (
    Script("opt/single_node/run_1.3b.sh", 1.3, {"actor_zero_stage": 2, "critic_zero_stage": 2, **_PPO_BATCH_4, **_HE}),
    Script(
        "opt/single_node/run_6.7b.sh",
        6.7,
        {"actor_zero_stage": 3, "critic_zero_stage": 3, **_PPO_BATCH_4, **_HE, "actor_gradient_checkpointing": True},
    ),
    Script(
        "opt/single_node/run_13b.sh",
        13.0,
        {
            "actor_zero_stage": 3,
            "critic_zero_stage": 3,
            "per_device_generation_batch_size": 16,
            "per_device_training_batch_size": 16,
            **_HE,
            "inference_tp_size": 2,
            "actor_gradient_checkpointing": True,
            "actor_lora_dim": 128,
        },
    ),
    Script(
        "opt/single_node/run_30b_lora.sh",
        30.0,
        {
            "actor_zero_stage": 3,
            "critic_zero_stage": 3,
            **_PPO_BATCH_4,
            **_HE,
            "actor_gradient_checkpointing": True,
            "actor_lora_dim": 128,
        },
    ),
    Script(
        "opt/multi_node/run_66b.sh",
        66.0,
        {
            "actor_zero_stage": 3,
            "critic_zero_stage": 3,
            **_PPO_BATCH_4,
            **_HE,
            "inference_tp_size": 8,
            "tp_gather_partition_size": 4,
            "actor_gradient_checkpointing": True,
            "actor_lora_dim": 128,
        },
    ),
)
_PPO_OPT_GPU = (
    Script(
        "opt/single_gpu/run_1.3b.sh",
        1.3,
        {
            "actor_zero_stage": 0,
            "critic_zero_stage": 0,
            "gradient_accumulation_steps": 2,
            **_HE,
            "actor_lora_dim": 128,
            "actor_gradient_checkpointing": True,
        },
    ),
    Script(
        "opt/single_gpu/run_6.7b_lora.sh",
        6.7,
        {
            "actor_zero_stage": 0,
            "critic_zero_stage": 0,
            "per_device_generation_batch_size": 8,
            "per_device_training_batch_size": 8,
            "gradient_accumulation_steps": 16,
            **_HE,
            "actor_lora_dim": 128,
            "actor_gradient_checkpointing": True,
            "critic_gradient_checkpointing": True,
        },
    ),
)
_PPO_LLAMA = (
    Script(
        "llama2/run_llama2_7b.sh",
        7.0,
        {
            "actor_zero_stage": 3,
            "critic_zero_stage": 3,
            "per_device_generation_batch_size": 1,
            "per_device_training_batch_size": 1,
            **_HE,
            "actor_gradient_checkpointing": True,
            "critic_gradient_checkpointing": True,
            "offload_reference_model": True,
        },
    ),
)

_SFT_OPT_NODE = (
    Script("opt/single_node/run_1.3b.sh", 1.3, {"zero_stage": 2, "per_device_train_batch_size": 8}),
    Script(
        "opt/single_node/run_6.7b.sh",
        6.7,
        {"zero_stage": 3, "per_device_train_batch_size": 6, "gradient_checkpointing": True},
    ),
    Script(
        "opt/single_node/run_13b.sh",
        13.0,
        {"zero_stage": 3, "per_device_train_batch_size": 4, "gradient_checkpointing": True, "lora_dim": 128},
    ),
    Script(
        "opt/single_node/run_30b_lora.sh",
        30.0,
        {"zero_stage": 3, "per_device_train_batch_size": 4, "gradient_checkpointing": True, "lora_dim": 128},
    ),
    Script(
        "opt/multi_node/run_66b.sh",
        66.0,
        {"zero_stage": 3, "per_device_train_batch_size": 4, "gradient_checkpointing": True, "lora_dim": 128},
    ),
)
_SFT_OPT_GPU = (
    Script("opt/single_gpu/run_1.3b.sh", 1.3, {"zero_stage": 0, "gradient_accumulation_steps": 8, "lora_dim": 128}),
    Script(
        "opt/single_gpu/run_6.7b_lora.sh",
        6.7,
        {
            "zero_stage": 0,
            "per_device_train_batch_size": 8,
            "gradient_accumulation_steps": 16,
            "gradient_checkpointing": True,
            "lora_dim": 128,
        },
    ),
)
_SFT_LLAMA = (
    Script(
        "llama2/run_llama2_7b.sh",
        7.0,
        {"zero_stage": 3, "per_device_train_batch_size": 4, "gradient_checkpointing": True},
    ),
)

_RM_OPT_GPU = (Script("opt/single_gpu/run_350m.sh", 0.35, {"zero_stage": 0, "gradient_accumulation_steps": 4}),)
_RM_OPT_NODE = (Script("opt/single_node/run_350m.sh", 0.35, {"zero_stage": 0, "per_device_train_batch_size": 4}),)
_RM_OPT_MULTI = (Script("opt/multi_node/run_350m.sh", 0.35, {"zero_stage": 0, "per_device_train_batch_size": 2}),)
_RM_LLAMA = (
    Script(
        "llama2/run_llama2_7b.sh",
        7.0,
        {"zero_stage": 3, "per_device_train_batch_size": 8, "gradient_checkpointing": True, "offload": True},
    ),
)

_STEP_DIR = {
    "sft": "step1_supervised_finetuning",
    "rm": "step2_reward_model_finetuning",
    "ppo": "step3_rlhf_finetuning",
}


@dataclass(frozen=True)
class Baseline:
    """The shipped settings as a plan, where they came from, and what had to change."""

    plan: Plan
    script: str
    adjustments: tuple[str, ...] = ()


def _candidates(step: str, family: str, world: int) -> tuple[Script, ...]:
    opt = family == "opt"
    if step == "ppo":
        return (_PPO_OPT_GPU if world == 1 else _PPO_OPT_NODE) if opt else _PPO_LLAMA
    if step == "sft":
        return (_SFT_OPT_GPU if world == 1 else _SFT_OPT_NODE) if opt else _SFT_LLAMA
    if not opt:
        return _RM_LLAMA
    return _RM_OPT_GPU if world == 1 else _RM_OPT_MULTI if world > 8 else _RM_OPT_NODE


def nearest_script(step: str, model: ModelSpec, world: int) -> Script:
    billions = max(model.num_params / 1e9, 1e-6)
    scripts = _candidates(step, model.family, world)
    return min(scripts, key=lambda s: abs(math.log(billions) - math.log(s.billions)))


def _fit_tp(values: dict[str, Any], world: int, notes: list[str]) -> None:
    tp = int(values.get("inference_tp_size", 1))
    fitted = max(d for d in range(1, tp + 1) if world % d == 0 and tp % d == 0)
    if fitted != tp:
        values["inference_tp_size"] = fitted
        notes.append(f"inference_tp_size {tp} -> {fitted} (must divide {world} GPUs)")


def baseline_plan(
    step: str,
    model: ModelSpec,
    world: int,
    *,
    critic_model: ModelSpec | None = None,
    workload: Mapping[str, Any] | None = None,
) -> Baseline:
    """DeepSpeed-Chat's shipped settings for the nearest model size and GPU count, valid on `world` GPUs."""
    script = nearest_script(step, model, world)
    values: dict[str, Any] = {
        **lora_defaults(step, model.family, critic_model.family if critic_model else None),
        **script.values,
    }
    notes: list[str] = []
    if step == "ppo":
        _fit_tp(values, world, notes)
    for name, value in (workload or {}).items():
        if values.get(name, value) != value:
            notes.append(f"{name} {values[name]} -> {value} (the space's workload)")
        values[name] = value
    plan = make_plan(step, values)
    broken = violations(plan, Context(world_size=world, model=model, critic_model=critic_model))
    if broken:
        raise UserInputError(f"baseline {script.path} breaks rule {broken[0]} on {world} GPU(s)")
    return Baseline(
        plan=plan, script=_DSC + f"{_STEP_DIR[step]}/training_scripts/{script.path}", adjustments=tuple(notes)
    )
