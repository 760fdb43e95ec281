"""Step 3: PPO with actor, reference, critic and reward models (DeepSpeed-Chat training/step3_rlhf_finetuning).

One iteration generates answers for `generation_batches` prompt batches (with the Hybrid Engine
when enabled), scores them with the frozen reference and reward models, then trains actor and
critic for `ppo_epochs` passes over that experience in training micro-batches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..catalog import ModelSpec
from ..plan import (
    DTYPE,
    NON_NEGATIVE,
    POSITIVE,
    ZERO,
    BaselineScript,
    BatchShape,
    Context,
    Inert,
    LoraRole,
    Rule,
    ScriptSpec,
    StepStrategy,
    eval_config,
    frozen_stage,
    knob,
    register_step,
    train_config,
)
from ._he_tp import HE_TP_SOURCES, he_tp_cannot_shard
from ._supervised import padding_args


@dataclass(frozen=True, kw_only=True)
class PpoPlan:
    """Step 3 main.py's tuning flags and defaults."""

    step: ClassVar[str] = "ppo"
    actor_zero_stage: int = knob(0, "ZeRO stage of the actor", **ZERO)
    critic_zero_stage: int = knob(0, "ZeRO stage of the critic", **ZERO)
    offload: bool = knob(False, "offload actor/critic optimizer state (and ZeRO-3 params) to host")
    offload_reference_model: bool = knob(False, "keep the reference model's params in host memory")
    offload_reward_model: bool = knob(False, "keep the reward model's params in host memory")
    actor_lora_dim: int = knob(0, "actor LoRA rank; 0 disables", **NON_NEGATIVE, job=True)
    critic_lora_dim: int = knob(0, "critic LoRA rank; 0 disables", **NON_NEGATIVE, job=True)
    actor_lora_module_name: str = knob("decoder.layers.", "actor Linear names that get LoRA", job=True)
    critic_lora_module_name: str = knob("decoder.layers.", "critic Linear names that get LoRA", job=True)
    only_optimize_lora: bool = knob(False, "freeze base weights, train LoRA only", job=True)
    actor_gradient_checkpointing: bool = knob(False, "activation checkpointing in the actor")
    critic_gradient_checkpointing: bool = knob(False, "activation checkpointing in the critic")
    per_device_generation_batch_size: int = knob(16, "prompts per GPU per generation", **POSITIVE)
    per_device_training_batch_size: int = knob(16, "PPO micro-batch per GPU", **POSITIVE)
    generation_batches: int = knob(1, "generation batches gathered before training", **POSITIVE)
    ppo_epochs: int = knob(1, "passes over the gathered experience", **POSITIVE, job=True)
    gradient_accumulation_steps: int = knob(1, "micro-batches per optimizer step", **POSITIVE)
    enable_hybrid_engine: bool = knob(False, "DeepSpeed Hybrid Engine for actor generation")
    inference_tp_size: int = knob(1, "Hybrid Engine tensor-parallel size for generation", **POSITIVE)
    tp_gather_partition_size: int = knob(8, "layers gathered at a time for HE TP", **POSITIVE)
    release_inference_cache: bool = knob(False, "free HE inference workspace after generating")
    unpin_actor_parameters: bool = knob(False, "do not keep gathered actor params pinned for HE")
    max_prompt_seq_len: int = knob(256, "prompt tokens", **POSITIVE, job=True)
    max_answer_seq_len: int = knob(256, "generated answer tokens", **POSITIVE, job=True)
    dtype: str = knob("fp16", "16-bit training dtype", **DTYPE, job=True)
    enable_ema: bool = knob(False, "keep an EMA copy of the actor and save it as a checkpoint", job=True)

    @property
    def samples_per_step_per_gpu(self) -> int:
        """Prompt+answer sequences one PPO iteration consumes per GPU."""
        return self.per_device_generation_batch_size * self.generation_batches

    @property
    def tokens_per_sample(self) -> int:
        return self.max_prompt_seq_len + self.max_answer_seq_len


def tp_needs_zero3(plan: PpoPlan, ctx: Context) -> str | None:
    if plan.inference_tp_size > 1 and plan.actor_zero_stage != 3:
        return (
            f"inference_tp_size={plan.inference_tp_size} needs actor_zero_stage=3 "
            f"(got {plan.actor_zero_stage}): Hybrid Engine tensor sharding gathers ZeRO-3 partitions"
        )
    return None


def tp_needs_hybrid_engine(plan: PpoPlan, ctx: Context) -> str | None:
    if plan.inference_tp_size > 1 and not plan.enable_hybrid_engine:
        return f"inference_tp_size={plan.inference_tp_size} has no effect without enable_hybrid_engine=true"
    return None


def tp_divides_world(plan: PpoPlan, ctx: Context) -> str | None:
    if ctx.world_size % plan.inference_tp_size:
        return (
            f"inference_tp_size={plan.inference_tp_size} must divide the world size "
            f"({ctx.world_size} % {plan.inference_tp_size} = {ctx.world_size % plan.inference_tp_size})"
        )
    return None


def zero2_he_offload_needs_lora(plan: PpoPlan, ctx: Context) -> str | None:
    if (
        plan.actor_zero_stage == 2
        and plan.critic_zero_stage == 2
        and plan.enable_hybrid_engine
        and plan.offload
        and plan.actor_lora_dim == 0
    ):
        return (
            "DeepSpeed-Chat refuses actor_zero_stage=2 + critic_zero_stage=2 + enable_hybrid_engine "
            "+ offload without LoRA (actor_lora_dim=0): training instability"
        )
    return None


def _no_he(c: Mapping[str, np.ndarray]) -> np.ndarray:
    return ~c["enable_hybrid_engine"].astype(bool)


_INERT = (
    Inert("release_inference_cache", ("enable_hybrid_engine",), _no_he, "only the Hybrid Engine has the cache"),
    Inert("inference_tp_size", ("enable_hybrid_engine",), _no_he, "only the Hybrid Engine generates with TP"),
    Inert(
        "unpin_actor_parameters",
        ("enable_hybrid_engine", "actor_zero_stage"),
        lambda c: _no_he(c) | (c["actor_zero_stage"] != 3),
        "pinning applies to the HE's ZeRO-3 gather",
    ),
    Inert(
        "tp_gather_partition_size",
        ("enable_hybrid_engine", "inference_tp_size"),
        lambda c: _no_he(c) | (c["inference_tp_size"] <= 1),
        "layers gathered at a time for HE TP only",
    ),
    Inert(
        "offload_reference_model",
        ("actor_zero_stage",),
        lambda c: c["actor_zero_stage"] != 3,
        "the reference model runs at ZeRO-3 only with a ZeRO-3 actor; DeepSpeed offloads params at ZeRO-3 only",
    ),
    Inert(
        "offload_reward_model",
        ("critic_zero_stage",),
        lambda c: c["critic_zero_stage"] != 3,
        "the reward model runs at ZeRO-3 only with a ZeRO-3 critic; DeepSpeed offloads params at ZeRO-3 only",
    ),
)

_RULES: tuple[Rule[PpoPlan], ...] = (
    Rule("tp_needs_zero3", ("inference_tp_size", "actor_zero_stage"), tp_needs_zero3),
    Rule("tp_needs_hybrid_engine", ("inference_tp_size", "enable_hybrid_engine"), tp_needs_hybrid_engine),
    Rule("tp_divides_world", ("inference_tp_size",), tp_divides_world),
    Rule(
        "he_tp_cannot_shard",
        ("inference_tp_size", "enable_hybrid_engine"),
        he_tp_cannot_shard,
        stack=True,
        sources=HE_TP_SOURCES,
    ),
    Rule(
        "zero2_he_offload_needs_lora",
        ("actor_zero_stage", "critic_zero_stage", "enable_hybrid_engine", "offload", "actor_lora_dim"),
        zero2_he_offload_needs_lora,
    ),
)

_HE = {"enable_hybrid_engine": True}
_BATCH_4 = {"per_device_generation_batch_size": 4, "per_device_training_batch_size": 4}

_CRITIC_CHECK = """\
# The critic and reward models start from a step-2 (reward model) output directory: DeepSpeed-Chat's
# create_critic_model loads pytorch_model.bin from it. A hub id of a sharded model stops at startup, and a
# base model (e.g. facebook/opt-350m) silently keeps a randomly initialised value head.
if [ -d "$CRITIC_MODEL_PATH" ] && [ ! -f "$CRITIC_MODEL_PATH/pytorch_model.bin" ]; then
    echo "CRITIC_MODEL_PATH=$CRITIC_MODEL_PATH has no pytorch_model.bin: pass a step-2 output directory" >&2
    exit 2
fi"""


@register_step
class Ppo(StepStrategy):
    name = "ppo"
    title = "RLHF with PPO (step 3)"
    plan_class = PpoPlan
    batch = BatchShape(
        ("prompts_per_iteration", "samples_per_update"),
        "per_device_generation_batch_size",
        "generation_batches",
        inner="per_device_training_batch_size",
        inner_repeats="gradient_accumulation_steps",
    )
    sequence_knobs = ("max_prompt_seq_len", "max_answer_seq_len")
    lora_roles = (
        LoraRole("actor", "actor_lora_dim", "actor_lora_module_name", "actor"),
        LoraRole("critic", "critic_lora_dim", "critic_lora_module_name", "critic"),
    )
    zero_stage_knobs = ("actor_zero_stage", "critic_zero_stage")
    phases = ("generation", "experience", "actor_train", "critic_train")
    config_files = {
        "actor": "ds_config_actor.json",
        "critic": "ds_config_critic.json",
        "ref": "ds_config_ref.json",
        "reward": "ds_config_reward.json",
    }
    script = ScriptSpec(
        "run_step3.sh",
        "step3_rlhf_finetuning",
        (
            "actor_zero_stage",
            "critic_zero_stage",
            "per_device_generation_batch_size",
            "per_device_training_batch_size",
            "max_prompt_seq_len",
            "max_answer_seq_len",
        ),
    )
    uses_critic = True
    uses_hybrid_engine = True
    cost_function = "dstune.costmodel._estimate:score_ppo"
    worker_class = "dstune.profile._ppo:PpoStep"

    def rules(self) -> tuple[Rule[PpoPlan], ...]:
        return _RULES

    def inert(self) -> tuple[Inert, ...]:
        return _INERT

    def deepspeed_configs(self, plan: Any, world_size: int) -> dict[str, dict[str, Any]]:
        common = {
            "dtype": plan.dtype,
            "micro": plan.per_device_training_batch_size,
            "world_size": world_size,
            "accumulation": plan.gradient_accumulation_steps,
        }
        hybrid_engine = {
            "enabled": plan.enable_hybrid_engine,
            "max_out_tokens": plan.max_prompt_seq_len + plan.max_answer_seq_len,
            "inference_tp_size": plan.inference_tp_size,
            "release_inference_cache": plan.release_inference_cache,
            "pin_parameters": not plan.unpin_actor_parameters,
            "tp_gather_partition_size": plan.tp_gather_partition_size,
        }
        return {
            "actor": train_config(
                offload=plan.offload, stage=plan.actor_zero_stage, hybrid_engine=hybrid_engine, **common
            ),
            "critic": train_config(offload=plan.offload, stage=plan.critic_zero_stage, **common),
            "ref": eval_config(
                offload=plan.offload_reference_model, stage=frozen_stage(plan.actor_zero_stage), **common
            ),
            "reward": eval_config(
                offload=plan.offload_reward_model, stage=frozen_stage(plan.critic_zero_stage), **common
            ),
        }

    def sizes_label(self, values: Mapping[str, Any], batches: Mapping[str, int]) -> str:
        sizes = (
            f"{batches['prompts_per_iteration']} prompts/iteration, {batches['samples_per_update']} samples/update, "
            f"{values['max_prompt_seq_len']}+{values['max_answer_seq_len']} tokens"
        )
        if int(values.get("ppo_epochs", 1)) != 1:
            sizes += f", {values['ppo_epochs']} PPO epochs"
        return sizes

    def baseline_scripts(self, family: str, world: int) -> tuple[BaselineScript, ...]:
        if family != "opt":
            return _LLAMA
        return _OPT_GPU if world == 1 else _OPT_NODE

    def adjust_baseline(self, values: dict[str, Any], world: int, notes: list[str]) -> None:
        """A shipped inference_tp_size that does not divide the world size becomes its largest divisor that does."""
        tp = int(values.get("inference_tp_size", 1))
        fitted = max(d for d in range(1, tp + 1) if world % d == 0 and tp % d == 0)
        if fitted != tp:
            values["inference_tp_size"] = fitted
            notes.append(f"inference_tp_size {tp} -> {fitted} (must divide {world} GPUs)")

    def script_models(
        self, hub_id: Callable[[ModelSpec], str], model: ModelSpec, critic: ModelSpec | None
    ) -> tuple[list[str], list[str]]:
        lines = [
            "# Actor: your step-1 (SFT) output directory; a hub id starts PPO from the base model.",
            f"ACTOR_MODEL_PATH=${{1:-{hub_id(model)}}}",
            f"# Critic/reward: your step-2 output directory for {(critic or model).name}.",
            "CRITIC_MODEL_PATH=${2:-../step2_reward_model_finetuning/output}",
            "OUTPUT=${3:-./output_step3}",
            _CRITIC_CHECK,
        ]
        args = [
            "--actor_model_name_or_path",
            "$ACTOR_MODEL_PATH",
            "--critic_model_name_or_path",
            "$CRITIC_MODEL_PATH",
            *padding_args(model),
        ]
        return lines, args


_OPT_NODE = (
    BaselineScript(
        "opt/single_node/run_1.3b.sh",
        1.3,
        {"actor_zero_stage": 2, "critic_zero_stage": 2, **_BATCH_4, **_HE, "enable_ema": True},
    ),
    BaselineScript(
        "opt/single_node/run_6.7b.sh",
        6.7,
        {"actor_zero_stage": 3, "critic_zero_stage": 3, **_BATCH_4, **_HE, "actor_gradient_checkpointing": True},
    ),
    BaselineScript(
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
    BaselineScript(
        "opt/single_node/run_30b_lora.sh",
        30.0,
        {
            "actor_zero_stage": 3,
            "critic_zero_stage": 3,
            **_BATCH_4,
            **_HE,
            "actor_gradient_checkpointing": True,
            "actor_lora_dim": 128,
        },
    ),
    BaselineScript(
        "opt/multi_node/run_66b.sh",
        66.0,
        {
            "actor_zero_stage": 3,
            "critic_zero_stage": 3,
            **_BATCH_4,
            **_HE,
            "inference_tp_size": 8,
            "tp_gather_partition_size": 4,
            "actor_gradient_checkpointing": True,
            "actor_lora_dim": 128,
        },
    ),
)
_OPT_GPU = (
    BaselineScript(
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
    BaselineScript(
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
_LLAMA = (
    BaselineScript(
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
