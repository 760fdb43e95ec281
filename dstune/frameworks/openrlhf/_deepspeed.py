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


def role_worlds(plan: OpenRLHFPlan) -> dict[str, int]:
    """The DeepSpeed engines a plan starts and each one's world size (its own group's GPUs): the actor and,
    for gae, the critic train; the reference (KL > 0) and a reward model only run forwards."""
    roles = ["actor"] + (["critic"] if plan.has_critic else []) + (["ref"] if plan.has_ref else [])
    roles += ["reward"] if plan.has_reward_model else []
    return {role: plan.gpus_of(role) for role in roles}


def role_config(plan: OpenRLHFPlan, role: str) -> dict[str, Any]:
    """The config OpenRLHF 0.11.2 hands DeepSpeed for one role: DeepspeedStrategy.get_ds_train_config
    (actor, critic) or get_ds_eval_config (reference, reward), utils/deepspeed/deepspeed.py. The eval
    configs carry train.micro_batch_size and train.batch_size even under dynamic batching."""
    width = int(plan["ds.ring_attn_size"]) * int(plan["ds.tensor_parallel_size"])
    stage = int(plan["ds.zero_stage"])
    trains = role in ("actor", "critic")
    zero: dict[str, Any] = {"stage": stage if trains else (3 if stage == 3 else 0)}
    if trains:
        zero["offload_param"] = {"device": "none"}
        zero["offload_optimizer"] = {"device": "cpu" if plan["ds.adam_offload"] else "none", "pin_memory": True}
        if stage == 3:
            zero["reduce_scatter"] = True
    else:
        zero["offload_param"] = {"device": "cpu" if plan[f"{role}.offload"] else "none", "pin_memory": True}
    config: dict[str, Any] = {
        "zero_optimization": zero,
        "bf16": {"enabled": True},
        "gradient_clipping": 1.0,
        "train_micro_batch_size_per_gpu": int(plan["train.micro_batch_size"]),
        "train_batch_size": int(plan["train.batch_size"]) * width,
    }
    if trains and plan["train.dynamic_batch_enable"]:
        del config["train_batch_size"]
        config |= {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1}
    return config


def batch_refusal(config: dict[str, Any], world: int) -> str | None:
    """DeepSpeed 0.19.8's batch check (DeepSpeedConfig._set_batch_related_parameters, then
    _batch_assertion) at `world` ranks, in its own words; tests hold it to DeepSpeedConfig itself."""
    micro = config["train_micro_batch_size_per_gpu"]
    total = config.get("train_batch_size")
    accumulation = config.get("gradient_accumulation_steps")
    if total is None:
        return None
    if accumulation is None:
        accumulation = total // micro // world
    if accumulation <= 0 or total != micro * accumulation * world:
        return f"{total} != {micro} * {accumulation} * {world}"
    return None
