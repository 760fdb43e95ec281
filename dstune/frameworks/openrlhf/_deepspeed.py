"""The DeepSpeed configs dstune's OpenRLHF prediction assumes for a plan: what the memory and time
terms read (ZeRO stage, where the optimizer and frozen parameters live, batch sizes). Tests compare
these with what OpenRLHF 0.11.2's own get_train_ds_config / get_eval_ds_config and its strategy build."""

from __future__ import annotations

from typing import Any

from ._plan import OpenRLHFPlan


def assumed_train_config(plan: OpenRLHFPlan) -> dict[str, Any]:
    """Actor and critic: trained_states(stage, adam_offload); the 16-bit parameters never offloaded."""
    width = int(plan["ds.ring_attn_size"]) * int(plan["ds.tensor_parallel_size"])
    batch: dict[str, Any] = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1}
    if not plan["train.dynamic_batch_enable"]:
        batch = {
            "train_micro_batch_size_per_gpu": int(plan["train.micro_batch_size"]),
            "train_batch_size": int(plan["train.batch_size"]) * width,
        }
    return {
        "zero_optimization.stage": int(plan["ds.zero_stage"]),
        "zero_optimization.offload_optimizer.device": "cpu" if plan["ds.adam_offload"] else "none",
        "zero_optimization.offload_param.device": "none",
        "bf16.enabled": True,
        **batch,
    }


def assumed_eval_config(plan: OpenRLHFPlan, role: str) -> dict[str, Any]:
    """Reference and reward: frozen_states at ZeRO-3 when training uses 3, else stage 0; offload only matters
    at ZeRO-3 (the cost model's frozen_states ignores it below)."""
    stage = 3 if int(plan["ds.zero_stage"]) == 3 else 0
    offload = bool(plan[f"{role}.offload"])
    return {
        "zero_optimization.stage": stage,
        "zero_optimization.offload_param.device": "cpu" if offload else "none",
        "bf16.enabled": True,
    }
