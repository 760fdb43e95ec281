"""Step 2: reward model with a pairwise ranking loss (DeepSpeed-Chat training/step2_reward_model_finetuning).

A sample is one chosen/rejected pair: the model runs 2 sequences per sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from ..catalog import ModelSpec
from ..plan import BaselineScript, ScriptSpec, register_step
from ._supervised import SupervisedPlan, SupervisedStrategy, padding_args


@dataclass(frozen=True, kw_only=True)
class RmPlan(SupervisedPlan):
    """Step 2 main.py's tuning flags and defaults (the same as step 1's)."""

    step: ClassVar[str] = "rm"


@register_step
class Rm(SupervisedStrategy):
    name = "rm"
    title = "reward model (step 2)"
    plan_class = RmPlan
    sample_unit = "pairs"
    script = ScriptSpec(
        "run_step2.sh", "step2_reward_model_finetuning", ("zero_stage", "per_device_train_batch_size", "max_seq_len")
    )
    cost_function = "dstune.costmodel._estimate:score_rm"
    worker_class = "dstune.profile._supervised:RewardModelStep"
    scripts = {
        "gpu": (
            BaselineScript("opt/single_gpu/run_350m.sh", 0.35, {"zero_stage": 0, "gradient_accumulation_steps": 4}),
        ),
        "node": (
            BaselineScript("opt/single_node/run_350m.sh", 0.35, {"zero_stage": 0, "per_device_train_batch_size": 4}),
        ),
        "multi": (
            BaselineScript("opt/multi_node/run_350m.sh", 0.35, {"zero_stage": 0, "per_device_train_batch_size": 2}),
        ),
        "other": (
            BaselineScript(
                "llama2/run_llama2_7b.sh",
                7.0,
                {"zero_stage": 3, "per_device_train_batch_size": 8, "gradient_checkpointing": True, "offload": True},
            ),
        ),
    }

    def script_models(
        self, hub_id: Callable[[ModelSpec], str], model: ModelSpec, critic: ModelSpec | None
    ) -> tuple[list[str], list[str]]:
        lines, args = super().script_models(hub_id, model, critic)
        return lines, args + padding_args(model)
