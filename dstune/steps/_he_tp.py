"""The Hybrid Engine's tensor parallelism under DeepSpeed-Chat, as the target stack's DeepSpeed runs it.

A PPO rule with `stack=True`: it is a limit of DeepSpeed >= 0.9.2 (0.9.0 and 0.9.1, which DeepSpeed-Chat's
2023 tables ran on, sliced the weights without an mpu), read from `Context.stack` (the installed DeepSpeed
when the context names no stack). A shipped script that sets inference_tp_size > 1 on such a stack stays the
baseline, labelled unable to run there, and is never the pick.
"""

from __future__ import annotations

import functools
from typing import Any

from ..plan import Context

HE_TP_SOURCES = (
    "deepspeed/runtime/hybrid_engine.py generate(): apply_tensor_parallelism only `if self.mpu is not None` "
    "(since 0.9.2, DeepSpeed#3191); new_inference_container: set_tensor_parallel_config(inference_tp_size) without one",
    "deepspeed/runtime/hybrid_engine.py generate(): all_gather_into_tensor of input_ids only (DeepSpeed#3998)",
    "DeepSpeed-Chat dschat/rlhf/rlhf_engine.py: deepspeed.initialize(model, optimizer, lr_scheduler, config), "
    "no mpu; ppo_trainer.py: generate(prompts, attention_mask=mask, ...)",
)
"""Where DeepSpeed's (>= 0.9.2) and DeepSpeed-Chat's code says HE tensor parallelism cannot shard."""


@functools.lru_cache(maxsize=1)
def _deepspeed_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("deepspeed")
    except metadata.PackageNotFoundError:
        return None


def _target_deepspeed(ctx: Context) -> tuple[str | None, str]:
    """(the target stack's DeepSpeed version, how the message names it); the installed one without a stack."""
    if ctx.stack is None:
        version = _deepspeed_version()
        return version, f"DeepSpeed {version or '>= 0.9.2'}"
    version = ctx.stack.version("deepspeed")
    return version, f"stack {ctx.stack.name}'s DeepSpeed {version or ctx.stack.requires.get('deepspeed', '(unpinned)')}"


def _mpu_guards_tp(version: str | None) -> bool:
    """DeepSpeed 0.9.0-0.9.1 sliced HE weights without an mpu; 0.9.2 on only with one. Unknown: the current rule."""
    if version is None:
        return True
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version) >= Version("0.9.2")
    except InvalidVersion:
        return True


def he_tp_cannot_shard(plan: Any, ctx: Context) -> str | None:
    if plan.inference_tp_size <= 1 or not plan.enable_hybrid_engine:
        return None
    version, named = _target_deepspeed(ctx)
    if not _mpu_guards_tp(version):
        return None
    return (
        f"inference_tp_size={plan.inference_tp_size} cannot run under DeepSpeed-Chat on {named}: "
        "the Hybrid Engine slices its inference weights only when deepspeed.initialize got an mpu, which "
        "DeepSpeed-Chat never passes, yet configures its kernels for "
        f"{plan.inference_tp_size}-way tensor parallelism over the unsliced weights, and its generate() "
        "all-gathers input_ids but not the attention_mask DeepSpeed-Chat passes (DeepSpeed#3998); "
        "without inference containers the flag does nothing; use inference_tp_size=1"
    )
