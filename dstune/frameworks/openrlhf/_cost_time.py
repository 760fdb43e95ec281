"""Seconds of each phase of one synchronous OpenRLHF iteration, per GPU group, vectorised over plans.

Generation (per engine, engines balanced): prefill is compute-bound (each prompt prefilled n times
unless prefix caching), decode memory-bound at the concurrency vLLM allows (max_num_seqs, the KV
budget, the requests it has). Answer lengths are a distribution: the decode work follows the mean,
and the step lasts at least as many decode steps as the longest answer (the tail), which a
synchronous step, and a GRPO group, waits for. Experience forwards and training reuse DeepSpeed's
compute and ZeRO communication terms, with the part of ZeRO's gathers and reductions that hides behind
compute (comm_overlap) as in the rest of dstune (_time.overlapped), scaled by the fitted train_time_factor;
weight sync sends one tensor at a time (weight_sync_parts).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...costmodel.terms import (
    BYTES_16BIT,
    CostConstants,
    Hardware,
    ModelFacts,
    allgather_seconds,
    compute_seconds,
    forward_flops,
    optimizer_step_seconds,
    overlapped,
    tp_allreduce_seconds,
    train_backward_factor,
    zero3_fetch_seconds,
)
from ._cost_columns import Columns, lora_adapted, trained_params
from ._cost_constants import OpenRLHFConstants
from ._cost_memory import kv_budget_bytes, kv_bytes_per_token, typical_tokens


def _per_world(world: np.ndarray, hw: Hardware, make: object) -> np.ndarray:
    """Collective terms take the ring's size and link from Hardware; score rows per group size. A group that
    fits one node rides the node's own link: its placement group of one-GPU bundles is "PACK"ed (launcher.py
    RayActorGroup._initiate_actors, train_ppo_ray.py), which Ray puts on one node when it fits."""
    out = np.zeros(len(world))
    for w in np.unique(world):
        rows = world == w
        link = hw.intra_link_bytes_per_s if w <= hw.gpus_per_node else hw.link_bytes_per_s
        group = replace(hw, world=max(int(w), 1), link_bytes_per_s=link)
        out[rows] = np.broadcast_to(make(group), rows.shape)[rows]  # type: ignore[operator]
    return out


def generation_seconds(
    f: ModelFacts, cols: Columns, capacity: float, hw: Hardware, c: CostConstants, oc: OpenRLHFConstants
) -> dict[str, np.ndarray]:
    engines = np.maximum(cols.engines, 1)
    tp = np.maximum(cols.tp, 1)
    # dynamic filtering draws prompts until rollout.batch_size groups pass (samples_generator.py _generate_vllm)
    per_engine = cols.samples * cols.drawn / engines
    prompts_prefilled = np.where(cols.prefix_cache, cols.prompts * cols.drawn / engines, per_engine)
    prefill_tokens = prompts_prefilled * cols.prompt_len
    chunk = np.full(cols.n, float(oc.vllm_max_num_batched_tokens))
    prefill = compute_seconds(forward_flops(f, prefill_tokens, cols.prompt_len / 2.0) / tp, chunk, f, hw, c)
    kv_token = kv_bytes_per_token(f, tp)
    budget = np.maximum(kv_budget_bytes(f, cols, capacity, c, oc), 0.0)
    seq_tokens = cols.prompt_len + cols.answer_mean
    by_kv = np.floor(budget / kv_token / np.maximum(seq_tokens, 1.0))
    concurrency = np.maximum(np.minimum.reduce([np.full(cols.n, float(oc.vllm_max_num_seqs)), per_engine, by_kv]), 1.0)
    steps = np.maximum(per_engine * cols.answer_mean / concurrency, cols.answer_tail)
    context = cols.prompt_len + cols.answer_mean / 2.0
    weights = BYTES_16BIT * f.params / tp
    memory = (weights + concurrency * context * kv_token) / hw.hbm_bytes_per_s
    flops = concurrency * 2.0 * f.matmul_params / tp
    compute = flops / (hw.peak_flops * c.matmul_efficiency_max * f.hidden / (f.hidden + c.matmul_half_hidden))
    launch = f.layers * np.where(cols.eager, oc.vllm_launch_per_layer_eager_s, oc.vllm_launch_per_layer_graph_s)
    tp_reduce = 2.0 * f.layers * tp_allreduce_seconds(concurrency * f.hidden * 2.0, tp, hw, c)
    decode = steps * (np.maximum(memory, compute) + launch + tp_reduce + oc.vllm_step_overhead_s)
    wake = np.where(cols.vllm_sleep, 2.0 * weights / hw.host_link_bytes_per_s, 0.0)
    return {
        "prefill": prefill,
        "decode": decode,
        "vLLM sleep/wake": wake,
        "concurrency": concurrency,
        "decode steps": steps,
    }


def ring_seconds(
    f: ModelFacts, cols: Columns, tokens_per_rank: np.ndarray, hw: Hardware, c: CostConstants
) -> np.ndarray:
    """Ring attention passes every rank's K and V around the ring once per layer and pass: (ring - 1) hops of
    2 x tokens x kv width x 2 bytes over the node's link, taken as not hidden behind attention (an upper
    bound; its overlap is not modelled)."""
    hops = np.maximum(cols.ring, 1) - 1.0
    kv = 2.0 * tokens_per_rank * f.kv_heads * f.head_dim * BYTES_16BIT
    return f.layers * hops * (kv / hw.intra_link_bytes_per_s + c.collective_latency_s)


def _forward_pass_seconds(
    f: ModelFacts, cols: Columns, world: np.ndarray, frozen_offload: np.ndarray, hw: Hardware, c: CostConstants
) -> tuple[np.ndarray, np.ndarray]:
    """(seconds of one model's no-grad forwards over all samples, number of micro-batches per GPU)."""
    _, roll_tok = typical_tokens(cols)
    tokens = cols.samples * (cols.prompt_len + cols.answer_mean) / np.maximum(world, 1)
    compute = compute_seconds(forward_flops(f, tokens, cols.prompt_len + cols.answer_mean / 2.0), roll_tok, f, hw, c)
    micro = np.ceil(tokens / np.maximum(roll_tok, 1.0))
    gather = _per_world(world, hw, lambda h: allgather_seconds(np.full(cols.n, 2.0 * f.params), h))
    host = np.where(frozen_offload, 2.0 * f.params / np.maximum(world, 1) / hw.host_link_bytes_per_s, 0.0)
    z3 = np.where(cols.stage == 3, micro * (gather + zero3_fetch_seconds(f.layers, c) + host), 0.0)
    return overlapped(compute, z3, c) + micro * ring_seconds(f, cols, roll_tok, hw, c), micro


def experience_seconds(
    actor: ModelFacts, critic: ModelFacts, cols: Columns, hw: Hardware, c: CostConstants, oc: OpenRLHFConstants
) -> dict[str, np.ndarray]:
    no = np.zeros(cols.n, dtype=bool)
    ref_world = np.where(cols.actor_ref, cols.actor_gpus, cols.ref_gpus)
    rew_world = np.where(cols.colocate_all, cols.actor_gpus, cols.reward_gpus)
    out = {
        "actor": _forward_pass_seconds(actor, cols, cols.actor_gpus, no, hw, c)[0],
        "ref": cols.has_ref * _forward_pass_seconds(actor, cols, ref_world, cols.ref_offload, hw, c)[0],
        "critic": cols.has_critic
        * _forward_pass_seconds(
            critic, cols, np.where(cols.colocate_all, cols.actor_gpus, cols.critic_gpus), no, hw, c
        )[0],
        "reward": cols.has_reward * _forward_pass_seconds(critic, cols, rew_world, cols.reward_offload, hw, c)[0],
    }
    models = 1 + cols.has_ref + cols.has_critic + cols.has_reward
    out["empty_cache"] = np.where(cols.colocated, models * oc.empty_cache_s, 0.0)
    return out


def _train_seconds(f: ModelFacts, cols: Columns, world: np.ndarray, hw: Hardware, c: CostConstants) -> np.ndarray:
    train_tok, _ = typical_tokens(cols)
    tokens = cols.epochs * cols.samples * (cols.prompt_len + cols.answer_mean) / np.maximum(world, 1)
    p, trainable = trained_params(f, cols)
    weight_grads = np.minimum(trainable / max(f.matmul_params, 1), 1.0)
    factor = 1.0 + train_backward_factor(weight_grads, cols.checkpointing)
    compute = factor * compute_seconds(
        forward_flops(f, tokens, cols.prompt_len + cols.answer_mean / 2.0), train_tok, f, hw, c
    )
    micro = np.ceil(tokens / np.maximum(train_tok, 1.0))
    gather = _per_world(world, hw, lambda h: allgather_seconds(2.0 * p, h))
    reduce = _per_world(world, hw, lambda h: allgather_seconds(2.0 * trainable, h))
    z3 = np.where(cols.stage == 3, micro * (2.0 * gather + reduce + 3.0 * zero3_fetch_seconds(f.layers, c)), 0.0)
    steps = cols.epochs * np.ceil(cols.samples / cols.train_batch)
    # ZeRO-2 reduce-scatters the gradients of every micro-batch; ZeRO-1 keeps them whole and reduces once per
    # optimizer step, at the accumulation boundary (DeepSpeed stage_1_and_2.py reduce_ready_partitions_and_remove_grads)
    z2 = np.where(cols.stage == 2, micro * reduce, np.where(cols.stage == 1, steps * reduce, 0.0))
    passes = np.where(cols.checkpointing, 4.0, 3.0)
    ring = passes * micro * ring_seconds(f, cols, train_tok, hw, c)
    optimizer = _per_world(
        world, hw, lambda h: optimizer_step_seconds(p, trainable, cols.stage, cols.adam_offload, h, c)
    )
    return overlapped(compute, z3 + z2, c) + ring + steps * optimizer


def train_seconds(
    actor: ModelFacts, critic: ModelFacts, cols: Columns, hw: Hardware, c: CostConstants, oc: OpenRLHFConstants
) -> dict[str, np.ndarray]:
    """Actor and critic training. With ds.enable_sleep each model reloads and offloads its states around it."""
    critic_world = np.where(cols.colocate_all, cols.actor_gpus, cols.critic_gpus)
    k = oc.train_time_factor
    out = {
        "actor": k * _train_seconds(actor, cols, cols.actor_gpus, hw, c),
        "critic": k * cols.has_critic * _train_seconds(critic, cols, critic_world, hw, c),
    }
    out["checkpoint save (per iteration)"] = checkpoint_seconds(actor, critic, cols, hw, oc)
    moved = 14.0 * (
        trained_params(actor, cols)[1] / cols.actor_gpus
        + cols.has_critic * trained_params(critic, cols)[1] / np.maximum(critic_world, 1)
    )
    sleeping = cols.ds_sleep & ~cols.adam_offload & cols.colocated
    out["DeepSpeed offload/reload"] = np.where(sleeping, 2.0 * moved / hw.host_link_bytes_per_s, 0.0)
    return out


def checkpoint_seconds(
    actor: ModelFacts, critic: ModelFacts, cols: Columns, hw: Hardware, oc: OpenRLHFConstants
) -> np.ndarray:
    """A save every `ckpt.save_steps` iterations, spread over them: ppo_actor.py / ppo_critic.py save_checkpoint
    write DeepSpeed's checkpoint from every rank (16-bit weights and fp32 master + Adam moments: 2 + 12 bytes
    per trainable parameter) across the actor's nodes, and with ckpt.save_hf the actor's 16-bit HF copy from one
    rank."""
    pa, ta = trained_params(actor, cols)
    pc, tc = trained_params(critic, cols)
    ds = 2.0 * pa + 12.0 * ta + cols.has_critic * (2.0 * pc + 12.0 * tc)
    nodes = np.maximum(1.0, np.ceil(cols.actor_gpus / hw.gpus_per_node))
    seconds = ds / (oc.checkpoint_write_bytes_per_s * nodes) + np.where(
        cols.save_hf, BYTES_16BIT * pa / oc.checkpoint_write_bytes_per_s, 0.0
    )
    return seconds / cols.save_every


def sync_tensors(f: ModelFacts, cols: Columns) -> np.ndarray:
    """Tensors a weight sync sends: every entry of the actor's named_parameters() (ppo_actor.py:477-482). With
    LoRA, 0.11.2 walks the peft model as it is: every frozen base weight and both adapter matrices of each
    targeted Linear, unmerged (no merge_adapter)."""
    return len(f.spec.linear_layers()) + 2 * f.layers + 2 + 2 * lora_adapted(f, cols)


def weight_sync_parts(
    f: ModelFacts, cols: Columns, hw: Hardware, c: CostConstants, oc: OpenRLHFConstants
) -> dict[str, np.ndarray]:
    """broadcast_to_vllm (ppo_actor.py:409-490), one tensor after another:
    - ZeRO-3: GatheredParameters([param]) per tensor (:468-472), an all-gather over the actor's group plus
      DeepSpeed's fixed fetch cost per call. Adam offload adds nothing here: OpenRLHF builds the training
      config with offload=False (deepspeed.py get_ds_train_config), so the 16-bit partitions stay on the GPU.
    - Ray: update_weight.remote to every engine and ray.get on them (:426-437): `ray_call_s` per tensor.
    - Bytes: colocated, CUDA IPC (a device copy, :439-466); else the NCCL broadcast from rank 0 to every engine
      rank, each worker taking the full tensor (vllm_worker_wrap.py update_weight), at the fitted end-to-end
      rate or the link, whichever is slower."""
    tensors = sync_tensors(f, cols)
    total = BYTES_16BIT * trained_params(f, cols)[0]
    crosses = cols.actor_gpus + cols.engines * cols.tp > hw.gpus_per_node
    link = np.where(crosses, hw.link_bytes_per_s, hw.intra_link_bytes_per_s)
    broadcast = total / np.minimum(link, oc.weight_sync_bytes_per_s)
    gather = _per_world(cols.actor_gpus, hw, lambda h: allgather_seconds(total, h))
    fetch = tensors * zero3_fetch_seconds(1, c)
    return {
        "ZeRO-3 gather": np.where(cols.stage == 3, gather + fetch, 0.0),
        "Ray calls": tensors * oc.ray_call_s,
        "bytes": np.where(cols.colocated, total / hw.hbm_bytes_per_s, broadcast),
    }


def weight_sync_seconds(
    f: ModelFacts, cols: Columns, hw: Hardware, c: CostConstants, oc: OpenRLHFConstants
) -> np.ndarray:
    return np.sum(np.stack(list(weight_sync_parts(f, cols, hw, c, oc).values())), axis=0)
