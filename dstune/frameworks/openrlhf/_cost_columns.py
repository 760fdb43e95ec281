"""OpenRLHF plans as columns (one numpy array per quantity, one entry per plan), the shape the
vectorised cost terms read; built once per table so a search scores thousands of plans at once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ...catalog import ModelSpec
from ...costmodel.terms import ModelFacts
from ._plan import OpenRLHFPlan


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
    lora_rank: np.ndarray
    lora_targets: np.ndarray
    drawn: np.ndarray
    """Prompts drawn per kept prompt: 1 / the job's filter pass rate under dynamic filtering, else 1."""
    save_every: np.ndarray
    """Iterations between checkpoint saves (--ckpt.save_steps, a pass-through flag; inf without)."""
    save_hf: np.ndarray
    """`ds.lora.target_modules` as one space-separated string per plan ("all-linear" by default)."""

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
        lora_rank=flag("ds.lora.rank"),
        lora_targets=col(lambda p: str(p["ds.lora.target_modules"] or "all-linear"), object),
        drawn=col(
            lambda p: 1.0 / p.job.filter_pass_rate if p.kept_value("algo.dynamic_filtering_enable") == "" else 1.0
        ),
        save_every=col(_save_every),
        save_hf=col(lambda p: p.kept_value("ckpt.save_hf") == "", bool),
    )


def _save_every(p: OpenRLHFPlan) -> float:
    """ppo_trainer.py save_logs_and_checkpoints: a save when global_step % save_steps == 0, one step per
    iteration; -1 (the default) never saves."""
    try:
        steps = int(p.kept_value("ckpt.save_steps") or -1)
    except ValueError:
        return float("inf")
    return float(steps) if steps > 0 else float("inf")


def trained_params(f: ModelFacts, cols: Columns) -> tuple[np.ndarray, np.ndarray]:
    """(all parameters, trainable parameters) of a trained model (actor or critic) per plan. With
    `ds.lora.rank` > 0 OpenRLHF wraps it in peft's LoraConfig (openrlhf/models/actor.py, model.py): every base
    weight freezes and r x (d_in + d_out) adapter weights train per targeted Linear; "all-linear" targets every
    Linear but the output layer (the critic's value-head adapter, r x (hidden + 1), is left out)."""
    trainable = np.full(cols.n, float(f.params))
    extra = np.zeros(cols.n)
    for rank, targets in set(zip(cols.lora_rank.tolist(), cols.lora_targets.tolist(), strict=True)):
        if rank <= 0:
            continue
        rows = (cols.lora_rank == rank) & (cols.lora_targets == targets)
        adapters = rank * lora_width(f.spec, str(targets))
        trainable[rows] = adapters
        extra[rows] = adapters
    return f.params + extra, trainable


def lora_adapted(f: ModelFacts, cols: Columns) -> np.ndarray:
    """Linears that carry an adapter per plan (each adds two tensors to what a weight sync sends)."""
    out = np.zeros(cols.n)
    for rank, targets in set(zip(cols.lora_rank.tolist(), cols.lora_targets.tolist(), strict=True)):
        if rank > 0:
            rows = (cols.lora_rank == rank) & (cols.lora_targets == targets)
            out[rows] = len(_targeted(f.spec, str(targets)))
    return out


@lru_cache(maxsize=64)
def _targeted(spec: ModelSpec, targets: str) -> tuple[tuple[int, int], ...]:
    """peft's matching: "all-linear" is every Linear but the output layer; a name matches a module whose
    dotted name is it or ends with "." + it."""
    names = targets.split()
    return tuple(
        (layer.in_features, layer.out_features)
        for layer in spec.linear_layers()
        if (names == ["all-linear"] and layer.name != "lm_head")
        or any(layer.name == n or layer.name.endswith("." + n) for n in names)
    )


def lora_width(spec: ModelSpec, targets: str) -> int:
    """Sum of d_in + d_out over the targeted Linears (the adapter parameters per unit of rank)."""
    return sum(i + o for i, o in _targeted(spec, targets))
