"""One candidate's knobs per RLHF step, named exactly as DeepSpeed-Chat's flags.

Defaults are DeepSpeed-Chat's argparse defaults, so an empty plan is what a
user gets by running its main.py with no tuning flags.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Step = Literal["sft", "rm", "ppo"]
STEPS: tuple[str, ...] = ("sft", "rm", "ppo")

_ZERO = {"choices": (0, 1, 2, 3)}
_DTYPE = {"choices": ("fp16", "bf16")}
_POSITIVE = {"min": 1}
_NON_NEGATIVE = {"min": 0}


def _knob(default: Any, help: str, *, job: bool = False, **limits: Any) -> Any:
    """`job=True` marks a knob that defines what is trained (see _job.py), not how it runs."""
    return field(default=default, metadata={"help": help, "job": job, **limits})


@dataclass(frozen=True, kw_only=True)
class SftPlan:
    """Step 1: supervised fine-tuning of the actor (DeepSpeed-Chat step1 main.py)."""

    step: ClassVar[str] = "sft"
    zero_stage: int = _knob(0, "ZeRO stage of the trained model", **_ZERO)
    offload: bool = _knob(False, "offload optimizer state (and ZeRO-3 params) to host memory")
    lora_dim: int = _knob(0, "LoRA rank; 0 disables LoRA", **_NON_NEGATIVE, job=True)
    lora_module_name: str = _knob("decoder.layers.", "substring of Linear module names that get LoRA", job=True)
    only_optimize_lora: bool = _knob(False, "freeze base weights, train LoRA only", job=True)
    gradient_checkpointing: bool = _knob(False, "activation checkpointing in the trained model")
    per_device_train_batch_size: int = _knob(16, "micro-batch per GPU", **_POSITIVE)
    gradient_accumulation_steps: int = _knob(1, "micro-batches per optimizer step", **_POSITIVE)
    max_seq_len: int = _knob(512, "tokens per sample", **_POSITIVE, job=True)
    dtype: str = _knob("fp16", "16-bit training dtype", **_DTYPE, job=True)

    @property
    def samples_per_step_per_gpu(self) -> int:
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    @property
    def tokens_per_sample(self) -> int:
        return self.max_seq_len


@dataclass(frozen=True, kw_only=True)
class RmPlan(SftPlan):
    """Step 2: reward model with a pairwise ranking loss (DeepSpeed-Chat step2 main.py).

    A sample is one chosen/rejected pair: the model runs 2 sequences per sample.
    """

    step: ClassVar[str] = "rm"


@dataclass(frozen=True, kw_only=True)
class PpoPlan:
    """Step 3: PPO with actor, reference, critic and reward models (step3 main.py)."""

    step: ClassVar[str] = "ppo"
    actor_zero_stage: int = _knob(0, "ZeRO stage of the actor", **_ZERO)
    critic_zero_stage: int = _knob(0, "ZeRO stage of the critic", **_ZERO)
    offload: bool = _knob(False, "offload actor/critic optimizer state (and ZeRO-3 params) to host")
    offload_reference_model: bool = _knob(False, "keep the reference model's params in host memory")
    offload_reward_model: bool = _knob(False, "keep the reward model's params in host memory")
    actor_lora_dim: int = _knob(0, "actor LoRA rank; 0 disables", **_NON_NEGATIVE, job=True)
    critic_lora_dim: int = _knob(0, "critic LoRA rank; 0 disables", **_NON_NEGATIVE, job=True)
    actor_lora_module_name: str = _knob("decoder.layers.", "actor Linear names that get LoRA", job=True)
    critic_lora_module_name: str = _knob("decoder.layers.", "critic Linear names that get LoRA", job=True)
    only_optimize_lora: bool = _knob(False, "freeze base weights, train LoRA only", job=True)
    actor_gradient_checkpointing: bool = _knob(False, "activation checkpointing in the actor")
    critic_gradient_checkpointing: bool = _knob(False, "activation checkpointing in the critic")
    per_device_generation_batch_size: int = _knob(16, "prompts per GPU per generation", **_POSITIVE)
    per_device_training_batch_size: int = _knob(16, "PPO micro-batch per GPU", **_POSITIVE)
    generation_batches: int = _knob(1, "generation batches gathered before training", **_POSITIVE)
    ppo_epochs: int = _knob(1, "passes over the gathered experience", **_POSITIVE, job=True)
    gradient_accumulation_steps: int = _knob(1, "micro-batches per optimizer step", **_POSITIVE)
    enable_hybrid_engine: bool = _knob(False, "DeepSpeed Hybrid Engine for actor generation")
    inference_tp_size: int = _knob(1, "Hybrid Engine tensor-parallel size for generation", **_POSITIVE)
    tp_gather_partition_size: int = _knob(8, "layers gathered at a time for HE TP", **_POSITIVE)
    release_inference_cache: bool = _knob(False, "free HE inference workspace after generating")
    unpin_actor_parameters: bool = _knob(False, "do not keep gathered actor params pinned for HE")
    max_prompt_seq_len: int = _knob(256, "prompt tokens", **_POSITIVE, job=True)
    max_answer_seq_len: int = _knob(256, "generated answer tokens", **_POSITIVE, job=True)
    dtype: str = _knob("fp16", "16-bit training dtype", **_DTYPE, job=True)

    @property
    def samples_per_step_per_gpu(self) -> int:
        """Prompt+answer sequences one PPO iteration consumes per GPU."""
        return self.per_device_generation_batch_size * self.generation_batches

    @property
    def tokens_per_sample(self) -> int:
        return self.max_prompt_seq_len + self.max_answer_seq_len


Plan = SftPlan | RmPlan | PpoPlan
PLAN_CLASSES: dict[str, type] = {"sft": SftPlan, "rm": RmPlan, "ppo": PpoPlan}


def plan_class(step: str) -> type:
    from ..errors import UserInputError

    try:
        return PLAN_CLASSES[step]
    except KeyError:
        raise UserInputError(f"unknown step {step!r}; choose one of {', '.join(STEPS)}") from None


def knob_fields(step: str) -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(plan_class(step))


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return dataclasses.asdict(plan)
