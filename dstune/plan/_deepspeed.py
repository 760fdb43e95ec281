"""The DeepSpeed configs DeepSpeed-Chat builds for a plan, role by role.

Mirrors DeepSpeed-Chat's `get_train_ds_config` / `get_eval_ds_config` and the
batch arithmetic of its step mains and `DeepSpeedRLHFEngine`, so an exported
JSON is what the shipped scripts would have handed to `deepspeed.initialize`.
"""

from __future__ import annotations

from typing import Any

from ._knobs import Plan
from ._step import step_strategy


def _dtype_entry(dtype: str, train: bool) -> tuple[str, dict[str, Any]]:
    if dtype == "bf16":
        return "bfloat16", {"enabled": True}
    return "fp16", ({"enabled": True, "loss_scale_window": 100} if train else {"enabled": True})


def _batch(micro: int, world_size: int, accumulation: int) -> dict[str, int]:
    return {
        "train_batch_size": micro * world_size * accumulation,
        "train_micro_batch_size_per_gpu": micro,
    }


def train_config(
    *,
    offload: bool,
    dtype: str,
    stage: int,
    micro: int,
    world_size: int,
    accumulation: int,
    hybrid_engine: dict[str, Any] | None = None,
) -> dict[str, Any]:
    device = "cpu" if offload else "none"
    dtype_key, dtype_value = _dtype_entry(dtype, train=True)
    return {
        **_batch(micro, world_size, accumulation),
        "steps_per_print": 10,
        "zero_optimization": {
            "stage": stage,
            "overlap_comm": True,
            "offload_param": {"device": device},
            "offload_optimizer": {"device": device},
            "stage3_param_persistence_threshold": 1e4,
            "stage3_max_live_parameters": 3e7,
            "stage3_prefetch_bucket_size": 3e7,
            "memory_efficient_linear": False,
        },
        dtype_key: dtype_value,
        "gradient_clipping": 1.0,
        "prescale_gradients": False,
        "wall_clock_breakdown": False,
        "hybrid_engine": hybrid_engine or {"enabled": False},
    }


def eval_config(
    *, offload: bool, dtype: str, stage: int, micro: int, world_size: int, accumulation: int
) -> dict[str, Any]:
    dtype_key, dtype_value = _dtype_entry(dtype, train=False)
    return {
        **_batch(micro, world_size, accumulation),
        "steps_per_print": 10,
        "zero_optimization": {
            "stage": stage,
            "stage3_param_persistence_threshold": 1e4,
            "offload_param": {"device": "cpu" if offload else "none"},
            "memory_efficient_linear": False,
        },
        dtype_key: dtype_value,
        "gradient_clipping": 1.0,
        "prescale_gradients": False,
        "wall_clock_breakdown": False,
    }


def frozen_stage(trained_stage: int) -> int:
    """Reference and reward models use ZeRO-3 only when their trained twin does, else stage 0."""
    return 3 if trained_stage == 3 else 0


def to_deepspeed(plan: Plan, world_size: int) -> dict[str, dict[str, Any]]:
    """Role name -> DeepSpeed config, as the plan's step builds them (e.g. {"model"} for SFT)."""
    return step_strategy(plan.step).deepspeed_configs(plan, world_size)
