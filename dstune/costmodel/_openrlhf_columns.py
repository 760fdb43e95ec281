"""OpenRLHF plans as columns (one numpy array per quantity, one entry per plan), the shape the
vectorised cost terms read; built once per table so a search scores thousands of plans at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..frameworks.openrlhf import OpenRLHFPlan


@dataclass
class Columns:
    n: int
    colocated: np.ndarray
    """colocate_all without async: vLLM and every model on the actor's GPUs, phases one after another."""
    async_: np.ndarray
    colocate_all: np.ndarray
    actor_ref: np.ndarray
    critic_reward: np.ndarray
    has_ref: np.ndarray
    has_critic: np.ndarray
    has_reward: np.ndarray
    actor_gpus: np.ndarray
    ref_gpus: np.ndarray
    critic_gpus: np.ndarray
    reward_gpus: np.ndarray
    engines: np.ndarray
    tp: np.ndarray
    util: np.ndarray
    vllm_sleep: np.ndarray
    eager: np.ndarray
    prefix_cache: np.ndarray
    stage: np.ndarray
    adam_offload: np.ndarray
    ref_offload: np.ndarray
    reward_offload: np.ndarray
    ds_sleep: np.ndarray
    packing: np.ndarray
    dynamic: np.ndarray
    train_tokens: np.ndarray
    rollout_tokens: np.ndarray
    train_micro: np.ndarray
    rollout_micro: np.ndarray
    checkpointing: np.ndarray
    ring: np.ndarray
    prompts: np.ndarray
    n_samples: np.ndarray
    train_batch: np.ndarray
    epochs: np.ndarray
    prompt_len: np.ndarray
    answer_mean: np.ndarray
    answer_tail: np.ndarray

    @property
    def samples(self) -> np.ndarray:
        return self.prompts * self.n_samples


def columns(plans: list[OpenRLHFPlan]) -> Columns:
    def col(get: object, dtype: type = float) -> np.ndarray:
        return np.array([get(p) for p in plans], dtype=dtype)  # type: ignore[operator]

    def flag(name: str, dtype: type = float) -> np.ndarray:
        return col(lambda p: p[name] or 0, dtype)

    packing = col(
        lambda p: bool(p["ds.packing_samples"] or p["train.dynamic_batch_enable"] or p["ds.ring_attn_size"] > 1), bool
    )
    sleep_kept = col(lambda p: bool(p["vllm.enable_sleep"] and p["train.colocate_all"]), bool)
    train_tokens = flag("train.max_tokens_per_gpu")
    rollout_tokens = col(lambda p: p["rollout.max_tokens_per_gpu"] or p["train.max_tokens_per_gpu"], float)
    tail = col(lambda p: p.answer_budget, float)
    return Columns(
        n=len(plans),
        colocated=col(lambda p: p.placement == "colocated", bool),
        async_=flag("train.async_enable", bool),
        colocate_all=flag("train.colocate_all", bool),
        actor_ref=col(lambda p: bool(p["train.colocate_actor_ref"] or p["train.colocate_all"]), bool),
        critic_reward=flag("train.colocate_critic_reward", bool),
        has_ref=col(lambda p: p.has_ref, bool),
        has_critic=col(lambda p: p.has_critic, bool),
        has_reward=col(lambda p: p.has_reward_model, bool),
        actor_gpus=col(lambda p: p.gpus_of("actor")),
        ref_gpus=col(lambda p: p.gpus_of("ref")),
        critic_gpus=col(lambda p: p.gpus_of("critic")),
        reward_gpus=col(lambda p: p.gpus_of("reward")),
        engines=col(lambda p: p.engines),
        tp=flag("vllm.tensor_parallel_size"),
        util=flag("vllm.gpu_memory_utilization"),
        vllm_sleep=sleep_kept,
        eager=flag("vllm.enforce_eager", bool),
        prefix_cache=flag("vllm.enable_prefix_caching", bool),
        stage=flag("ds.zero_stage", int),
        adam_offload=flag("ds.adam_offload", bool),
        ref_offload=flag("ref.offload", bool),
        reward_offload=flag("reward.offload", bool),
        ds_sleep=flag("ds.enable_sleep", bool),
        packing=packing,
        dynamic=flag("train.dynamic_batch_enable", bool),
        train_tokens=train_tokens,
        rollout_tokens=rollout_tokens,
        train_micro=flag("train.micro_batch_size"),
        rollout_micro=flag("rollout.micro_batch_size"),
        checkpointing=flag("actor.gradient_checkpointing_enable", bool),
        ring=flag("ds.ring_attn_size"),
        prompts=flag("rollout.batch_size"),
        n_samples=flag("rollout.n_samples_per_prompt"),
        train_batch=flag("train.batch_size"),
        epochs=flag("train.max_epochs"),
        prompt_len=col(lambda p: p.job.prompt_tokens),
        answer_mean=col(lambda p: p.job.answer_mean_ratio) * tail,
        answer_tail=tail,
    )
