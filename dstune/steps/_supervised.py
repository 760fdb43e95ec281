"""What DeepSpeed-Chat's one-model steps share: a trained model on micro-batches of whole sequences."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ..catalog import ModelSpec
from ..plan import (
    DTYPE,
    NON_NEGATIVE,
    POSITIVE,
    ZERO,
    BaselineScript,
    BatchShape,
    LoraRole,
    StepStrategy,
    knob,
    train_config,
)


@dataclass(frozen=True, kw_only=True)
class SupervisedPlan:
    """Knobs of a step that trains one model (DeepSpeed-Chat step1 / step2 main.py flags)."""

    step: ClassVar[str] = ""
    zero_stage: int = knob(0, "ZeRO stage of the trained model", **ZERO)
    offload: bool = knob(False, "offload optimizer state (and ZeRO-3 params) to host memory")
    lora_dim: int = knob(0, "LoRA rank; 0 disables LoRA", **NON_NEGATIVE, job=True)
    lora_module_name: str = knob("decoder.layers.", "substring of Linear module names that get LoRA", job=True)
    only_optimize_lora: bool = knob(False, "freeze base weights, train LoRA only", job=True)
    gradient_checkpointing: bool = knob(False, "activation checkpointing in the trained model")
    per_device_train_batch_size: int = knob(16, "micro-batch per GPU", **POSITIVE)
    gradient_accumulation_steps: int = knob(1, "micro-batches per optimizer step", **POSITIVE)
    max_seq_len: int = knob(512, "tokens per sample", **POSITIVE, job=True)
    dtype: str = knob("fp16", "16-bit training dtype", **DTYPE, job=True)

    @property
    def samples_per_step_per_gpu(self) -> int:
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    @property
    def tokens_per_sample(self) -> int:
        return self.max_seq_len


class SupervisedStrategy(StepStrategy):
    """One trained model, micro-batches x accumulation per optimizer step, phases forward/backward/step."""

    batch = BatchShape(("samples_per_step",), "per_device_train_batch_size", "gradient_accumulation_steps")
    sequence_knobs = ("max_seq_len",)
    lora_roles = (LoraRole("model", "lora_dim", "lora_module_name", "actor"),)
    zero_stage_knobs = ("zero_stage",)
    phases: ClassVar[tuple[str, ...]] = ("forward", "backward", "step")
    config_files = {"model": "ds_config.json"}
    scripts: ClassVar[dict[str, tuple[BaselineScript, ...]]]
    """Layout ("gpu": one GPU, "node": one node, "multi": several, "other": non-OPT families) -> scripts."""

    def deepspeed_configs(self, plan: Any, world_size: int) -> dict[str, dict[str, Any]]:
        return {
            "model": train_config(
                offload=plan.offload,
                dtype=plan.dtype,
                stage=plan.zero_stage,
                micro=plan.per_device_train_batch_size,
                world_size=world_size,
                accumulation=plan.gradient_accumulation_steps,
            )
        }

    def baseline_scripts(self, family: str, world: int) -> tuple[BaselineScript, ...]:
        if family != "opt":
            return self.scripts["other"]
        if world == 1:
            return self.scripts["gpu"]
        return self.scripts["multi"] if world > 8 and "multi" in self.scripts else self.scripts["node"]

    def script_models(
        self, hub_id: Callable[[ModelSpec], str], model: ModelSpec, critic: ModelSpec | None
    ) -> tuple[list[str], list[str]]:
        lines = [
            f"MODEL_PATH=${{1:-{hub_id(model)}}}",
            f"OUTPUT=${{2:-./output_{self.script.name.removeprefix('run_').removesuffix('.sh')}}}",
        ]
        return lines, ["--model_name_or_path", "$MODEL_PATH"]


def padding_args(model: ModelSpec) -> list[str]:
    """OPT's tokenizer puts one padding token first; DeepSpeed-Chat's reward scoring skips it."""
    return ["--num_padding_at_beginning", "1" if model.family == "opt" else "0"]
