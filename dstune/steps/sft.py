"""Step 1: supervised fine-tuning of the actor (DeepSpeed-Chat training/step1_supervised_finetuning)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..plan import BaselineScript, ScriptSpec, register_step
from ._supervised import SupervisedPlan, SupervisedStrategy


@dataclass(frozen=True, kw_only=True)
class SftPlan(SupervisedPlan):
    """Step 1 main.py's tuning flags and defaults."""

    step: ClassVar[str] = "sft"


@register_step
class Sft(SupervisedStrategy):
    name = "sft"
    title = "supervised fine-tuning (step 1)"
    plan_class = SftPlan
    script = ScriptSpec(
        "run_step1.sh", "step1_supervised_finetuning", ("zero_stage", "per_device_train_batch_size", "max_seq_len")
    )
    cost_function = "dstune.costmodel._estimate:score_sft"
    worker_class = "dstune.profile._supervised:SupervisedStep"
    scripts = {
        "node": (
            BaselineScript("opt/single_node/run_1.3b.sh", 1.3, {"zero_stage": 2, "per_device_train_batch_size": 8}),
            BaselineScript(
                "opt/single_node/run_6.7b.sh",
                6.7,
                {"zero_stage": 3, "per_device_train_batch_size": 6, "gradient_checkpointing": True},
            ),
            BaselineScript(
                "opt/single_node/run_13b.sh",
                13.0,
                {"zero_stage": 3, "per_device_train_batch_size": 4, "gradient_checkpointing": True, "lora_dim": 128},
            ),
            BaselineScript(
                "opt/single_node/run_30b_lora.sh",
                30.0,
                {"zero_stage": 3, "per_device_train_batch_size": 4, "gradient_checkpointing": True, "lora_dim": 128},
            ),
            BaselineScript(
                "opt/multi_node/run_66b.sh",
                66.0,
                {"zero_stage": 3, "per_device_train_batch_size": 4, "gradient_checkpointing": True, "lora_dim": 128},
            ),
        ),
        "gpu": (
            BaselineScript(
                "opt/single_gpu/run_1.3b.sh", 1.3, {"zero_stage": 0, "gradient_accumulation_steps": 8, "lora_dim": 128}
            ),
            BaselineScript(
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
        ),
        "other": (
            BaselineScript(
                "llama2/run_llama2_7b.sh",
                7.0,
                {"zero_stage": 3, "per_device_train_batch_size": 4, "gradient_checkpointing": True},
            ),
        ),
    }
