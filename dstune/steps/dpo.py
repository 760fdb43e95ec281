"""DPO: direct preference optimization of the actor against a frozen reference copy
(DeepSpeed-Chat training/step2_dpo_finetuning, run instead of steps 2 and 3).

Each micro-batch holds chosen and rejected answers (2 sequences per pair). The policy runs
forward and backward on both; the reference model, a second copy of the same checkpoint,
runs forward only. As step2_dpo's main.py sets it up, the reference model uses ZeRO-3 when
the policy does (with `offload_reference_model` putting its parameters in host memory) and
stage 0 otherwise, assuming it then fits whole on every GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ..catalog import ModelSpec
from ..plan import Inert, ScriptSpec, eval_config, frozen_stage, knob, register_step
from ._supervised import SupervisedPlan, SupervisedStrategy
from .rm import Rm


@dataclass(frozen=True, kw_only=True)
class DpoPlan(SupervisedPlan):
    """step2_dpo main.py's tuning flags and defaults."""

    step: ClassVar[str] = "dpo"
    offload_reference_model: bool = knob(False, "keep the reference model's params in host memory (ZeRO-3)")


@register_step
class Dpo(SupervisedStrategy):
    name = "dpo"
    title = "direct preference optimization (step 2, DPO)"
    plan_class = DpoPlan
    sample_unit = "pairs"
    phases = ("forward", "reference", "backward", "step")
    config_files = {"model": "ds_config.json", "ref": "ds_config_ref.json"}
    script = ScriptSpec(
        "run_step2_dpo.sh",
        "step2_dpo_finetuning",
        ("zero_stage", "per_device_train_batch_size", "max_seq_len"),
    )
    cost_function = "dstune.costmodel._dpo:score_dpo"
    worker_class = "dstune.profile._dpo:DpoStep"
    scripts = Rm.scripts
    """step2_dpo_finetuning/training_scripts holds the reward model's script paths with the same knobs
    (opt single_gpu / single_node / multi_node run_350m.sh, llama2 run_llama2_7b.sh; compared file by file)."""

    def inert(self) -> tuple[Inert, ...]:
        return (
            Inert(
                "offload_reference_model",
                ("zero_stage",),
                lambda c: c["zero_stage"] != 3,
                "the reference model runs at ZeRO-3 only with a ZeRO-3 policy; DeepSpeed offloads params at ZeRO-3 only",
            ),
        )

    def deepspeed_configs(self, plan: Any, world_size: int) -> dict[str, dict[str, Any]]:
        configs = super().deepspeed_configs(plan, world_size)
        configs["ref"] = eval_config(
            offload=plan.offload_reference_model,
            dtype=plan.dtype,
            stage=frozen_stage(plan.zero_stage),
            micro=plan.per_device_train_batch_size,
            world_size=world_size,
            accumulation=plan.gradient_accumulation_steps,
        )
        return configs

    def script_models(
        self, hub_id: Callable[[ModelSpec], str], model: ModelSpec, critic: ModelSpec | None
    ) -> tuple[list[str], list[str]]:
        lines, args = super().script_models(hub_id, model, critic)
        return [
            "# Policy and reference: your step-1 (SFT) output directory; a hub id starts from the base model.",
            *lines,
        ], args
