"""GPU memory of an OpenRLHF iteration per GPU group and phase, vectorised over plans.

Model states reuse DeepSpeed's terms (trained_states / frozen_states, dstune.costmodel.terms);
OpenRLHF's evaluation models run at ZeRO-3 when training does, else stage 0 (get_eval_ds_config).
vLLM holds `gpu_memory_utilization` x the card while awake; asleep (level 1) it keeps its CUDA graphs
and context. DeepSpeed asleep (offload_states) keeps the 16-bit weights: 2P/N at ZeRO-3, 2P at ZeRO-2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ...costmodel.terms import (
    BYTES_16BIT,
    CostConstants,
    ModelFacts,
    States,
    eval_activation_bytes,
    frozen_states,
    train_activation_bytes,
    trained_states,
    zero3_gathered_bytes,
    zero12_reduce_bucket_bytes,
)
from ._cost_columns import Columns, trained_params
from ._cost_constants import OpenRLHFConstants

OVERLAP_COMM = 0.0
"""OpenRLHF's get_train_ds_config sets `overlap_comm` only with --ds.overlap_comm, which dstune's launch does not
pass, and DeepSpeed leaves it off below ZeRO-3: one ZeRO 1-2 reduce bucket per backward, not two
(`CostConstants.overlap_comm`)."""

PHASES = ("generate", "experience", "train", "weight sync")
Breakdown = dict[str, np.ndarray]


_FIELDS = ("params", "grads", "optimizer", "buffers", "host")


def _by_world(make: Callable[[int], States], world: np.ndarray) -> States:
    """DeepSpeed's terms take one world size; rows with different group sizes are scored per size."""
    out = {k: np.zeros(len(world)) for k in _FIELDS}
    for w in np.unique(world):
        rows = world == w
        states = make(max(int(w), 1))
        for k in _FIELDS:
            out[k][rows] = np.broadcast_to(getattr(states, k), rows.shape)[rows]
    return States(**out)


def _trained(f: ModelFacts, cols: Columns, world: np.ndarray, c: CostConstants) -> States:
    """OpenRLHF trains with `offload_param` "none" (get_train_ds_config(offload=False)): Adam offload moves the
    optimizer and fp32 grads to the host, never the 16-bit parameters (DeepSpeed-Chat's offload moves both)."""
    p, trainable = trained_params(f, cols)
    states = _by_world(lambda w: trained_states(p, trainable, cols.stage, cols.adam_offload, w, c), world)
    shard = BYTES_16BIT * p / np.maximum(world, 1)
    kept = np.where(cols.stage == 3, shard, BYTES_16BIT * p)
    host = states.host - np.where(cols.adam_offload & (cols.stage == 3), shard * c.pinned_buffer_factor, 0.0)
    return States(kept, states.grads, states.optimizer, states.buffers, host)


def _grads_held(f: ModelFacts, cols: Columns, world: np.ndarray) -> np.ndarray:
    """16-bit gradients held across a training step's micro-batches (_memory.grad_accumulated_bytes): ZeRO-1
    keeps every .grad until the accumulation boundary reduces it, ZeRO-2 its 1/N partition (on the host with
    Adam offload), ZeRO-3's partition buffer is already in the states."""
    trainable = trained_params(f, cols)[1]
    part = np.where(cols.adam_offload, 0.0, BYTES_16BIT * trainable / np.maximum(world, 1))
    return np.select([cols.stage <= 1, cols.stage == 2], [BYTES_16BIT * trainable, part], default=0.0)


def _frozen(f: ModelFacts, cols: Columns, world: np.ndarray, offload: np.ndarray, c: CostConstants) -> States:
    stage = np.where(cols.stage == 3, 3, 0)
    return _by_world(lambda w: frozen_states(f.params, stage, offload, w, c), world)


def sequence_tokens(cols: Columns) -> tuple[np.ndarray, np.ndarray]:
    """(tokens per training forward, per experience forward) at their largest, split over the ring: packed
    up to max_tokens_per_gpu with dynamic batches (a longer single sequence still goes whole); with packing
    a micro-batch of mean-length samples that holds one longest sample; else micro-batches padded to it."""
    longest = cols.prompt_len + cols.answer_tail
    mean = cols.prompt_len + cols.answer_mean

    def largest(micro: np.ndarray, budget: np.ndarray) -> np.ndarray:
        packed = (micro - 1.0) * mean + longest
        return np.where(cols.dynamic, np.maximum(budget, longest), np.where(cols.packing, packed, micro * longest))

    ring = np.maximum(cols.ring, 1)
    return largest(cols.train_micro, cols.train_tokens) / ring, largest(cols.rollout_micro, cols.rollout_tokens) / ring


def typical_tokens(cols: Columns) -> tuple[np.ndarray, np.ndarray]:
    """(tokens per training forward, per experience forward) on average, per ring rank: what sets GEMM
    efficiency and the number of micro-batches (the largest forward sets memory: `sequence_tokens`)."""
    mean = cols.prompt_len + cols.answer_mean
    padded = cols.prompt_len + cols.answer_tail

    def typical(micro: np.ndarray, budget: np.ndarray) -> np.ndarray:
        packed = np.where(cols.packing, micro * mean, micro * padded)
        return np.where(cols.dynamic, np.maximum(budget, mean), packed)

    ring = np.maximum(cols.ring, 1)
    return typical(cols.train_micro, cols.train_tokens) / ring, typical(cols.rollout_micro, cols.rollout_tokens) / ring


@dataclass(frozen=True)
class _Terms:
    """Each model's states and each phase's activation terms, per GPU of the model's group and per row: the
    pieces the groups are made of, computed once for both layouts (colocated and split)."""

    act: States
    crit: States
    ref: States
    rew: States
    act_train: np.ndarray
    crit_train: np.ndarray
    act_eval: np.ndarray
    crit_eval: np.ndarray
    logits_train: np.ndarray
    logits_eval: np.ndarray
    z3_live: np.ndarray
    bucket: np.ndarray
    act_grads: np.ndarray
    crit_grads: np.ndarray
    has_ref: np.ndarray
    has_critic: np.ndarray
    has_reward: np.ndarray
    vllm_awake: np.ndarray


def _terms(actor: ModelFacts, critic: ModelFacts, cols: Columns, capacity: float, c: CostConstants) -> _Terms:
    """The states of the four models on their own group's world size, and the activations of a train and an
    eval forward (logits apart, since the breakdown names them), shared by every group and phase."""
    act = _trained(actor, cols, cols.actor_gpus, c)
    crit = _trained(critic, cols, cols.critic_gpus, c)
    ref = _frozen(actor, cols, np.where(cols.actor_ref, cols.actor_gpus, cols.ref_gpus), cols.ref_offload, c)
    rew_world = np.where(
        cols.colocate_all,
        cols.actor_gpus,
        np.where(cols.critic_reward & cols.has_critic, cols.critic_gpus, cols.reward_gpus),
    )
    rew = _frozen(critic, cols, rew_world, cols.reward_offload, c)
    train_tok, roll_tok = sequence_tokens(cols)
    one = np.ones(cols.n)
    act_train = train_activation_bytes(actor, one, train_tok, cols.checkpointing, c)
    crit_train = train_activation_bytes(critic, one, train_tok, cols.checkpointing, c)
    act_eval = eval_activation_bytes(actor, one, roll_tok, c)
    logits_train = train_tok * actor.vocab * c.logits_bytes_per_element_train
    logits_eval = roll_tok * actor.vocab * c.logits_bytes_per_element_eval
    return _Terms(
        act=act,
        crit=crit,
        ref=ref,
        rew=rew,
        act_train=act_train - logits_train,
        crit_train=crit_train,
        act_eval=act_eval - logits_eval,
        crit_eval=eval_activation_bytes(critic, one, roll_tok, c),
        logits_train=logits_train,
        logits_eval=logits_eval,
        z3_live=np.where(cols.stage == 3, zero3_gathered_bytes(actor.largest_layer_params, c), 0.0),
        bucket=zero12_reduce_bucket_bytes(cols.stage, replace(c, overlap_comm=OVERLAP_COMM)),
        act_grads=_grads_held(actor, cols, cols.actor_gpus),
        crit_grads=_grads_held(critic, cols, cols.critic_gpus),
        has_ref=cols.has_ref.astype(float),
        has_critic=cols.has_critic.astype(float),
        has_reward=cols.has_reward.astype(float),
        vllm_awake=cols.util * capacity,
    )


def _full(s: States) -> np.ndarray:
    return s.params + s.grads + s.optimizer + s.buffers


def _asleep(s: States, cols: Columns) -> np.ndarray:
    """offload_states moves optimizer, grads and masters to the host; with Adam offload it is skipped."""
    return np.where(cols.ds_sleep & ~cols.adam_offload, s.params, _full(s))


def group_memory(
    actor: ModelFacts,
    critic: ModelFacts,
    cols: Columns,
    capacity: float,
    c: CostConstants,
    oc: OpenRLHFConstants,
) -> dict[tuple[str, str], Breakdown]:
    """(group, phase) -> component -> bytes per GPU (vLLM's share already counts its own context).

    Groups: "colocated" (vLLM and all models on the actor's GPUs), "vllm", "actor" (with the reference
    when colocated with it), "ref", "critic" (with the reward model when colocated with it), "reward".
    Rows without a group have zeros there."""
    t = _terms(actor, critic, cols, capacity, c)
    return {**_colocated(t, actor, cols, c, oc), **_split(t, actor, cols, c, oc)}


def _colocated(
    t: _Terms, actor: ModelFacts, cols: Columns, c: CostConstants, oc: OpenRLHFConstants
) -> dict[tuple[str, str], Breakdown]:
    """The "colocated" group per phase: vLLM and every model share the actor's GPUs, so each phase holds the
    sleeping models' leftovers besides its own work. Zero on rows that do not colocate."""
    act, has_critic = t.act, t.has_critic
    vllm_asleep = np.where(
        cols.vllm_sleep, oc.vllm_nontorch_bytes + np.where(cols.eager, 0.0, oc.vllm_graph_bytes), t.vllm_awake
    )
    vllm_weights = BYTES_16BIT * actor.params / np.maximum(cols.tp, 1)
    processes = 1 + t.has_ref + has_critic + t.has_reward
    contexts = c.cuda_context_bytes + (processes - 1) * oc.process_context_bytes
    others = {
        "reference weights": t.has_ref * _full(t.ref),
        "critic states": has_critic * _asleep(t.crit, cols),
        "reward weights": t.has_reward * _full(t.rew),
    }
    co = cols.colocated.astype(float)
    out: dict[tuple[str, str], Breakdown] = {}
    out["colocated", "generate"] = {
        "vLLM (gpu_memory_utilization x card)": t.vllm_awake,
        "actor states (asleep)": _asleep(act, cols),
        **others,
        "CUDA contexts": contexts,
    }
    out["colocated", "experience"] = {
        "vLLM asleep": vllm_asleep,
        "actor states (asleep)": _asleep(act, cols),
        **others,
        "forward activations": np.maximum(t.act_eval, has_critic * t.crit_eval) + t.z3_live,
        "forward logits": t.logits_eval,
        "CUDA contexts": contexts,
    }
    out["colocated", "train"] = {
        "vLLM asleep": vllm_asleep,
        "actor states": _full(act),
        **others,
        "train activations": t.act_train + t.z3_live + t.bucket,
        "gradients held across micro-batches": t.act_grads,
        "train logits": t.logits_train,
        "critic training alongside (no ds.enable_sleep)": has_critic * np.where(cols.ds_sleep, 0.0, t.crit_train),
        "CUDA contexts": contexts,
    }
    out["colocated", "weight sync"] = {
        "vLLM weights (woken)": np.where(cols.vllm_sleep, vllm_weights, t.vllm_awake),
        "actor states (asleep)": _asleep(act, cols),
        **others,
        "IPC copy of the largest tensor (twice)": 2.0 * BYTES_16BIT * actor.largest_layer_params + t.z3_live,
        "CUDA contexts": contexts,
    }
    for key in list(out):
        out[key] = {k: v * co for k, v in out[key].items()}
    return out


def _split(
    t: _Terms, actor: ModelFacts, cols: Columns, c: CostConstants, oc: OpenRLHFConstants
) -> dict[tuple[str, str], Breakdown]:
    """The groups of a split layout per phase: vLLM engines, the actor (with the reference when colocated with
    it), the reference, the critic (with the reward model when colocated with it) and the reward model, each on
    its own GPUs; rows whose layout has no such group get zeros there."""
    zero = np.zeros(cols.n)
    has_ref, has_critic, has_reward = t.has_ref, t.has_critic, t.has_reward
    split = 1.0 - cols.colocated.astype(float)
    out: dict[tuple[str, str], Breakdown] = {}
    vllm_group = np.where(cols.engines > 0, split + cols.async_ * cols.colocate_all, 0.0)
    for phase in PHASES:
        out["vllm", phase] = {"vLLM (gpu_memory_utilization x card)": t.vllm_awake * vllm_group}
    with_ref = split * cols.actor_ref * has_ref
    alone = split * (1 - cols.actor_ref) * has_ref
    with_rew = split * cols.critic_reward * has_reward * has_critic
    rew_alone = split * has_reward * (1 - cols.critic_reward * has_critic)
    ctx = c.cuda_context_bytes
    receive = BYTES_16BIT * float(actor.largest_layer_params)
    for phase in PHASES:
        training, forward = phase == "train", phase == "experience"
        syncing = phase == "weight sync"
        a_act = t.act_train + t.bucket + t.act_grads if training else t.act_eval if forward else zero
        c_act = t.crit_train + t.bucket + t.crit_grads if training else t.crit_eval if forward else zero
        out["actor", phase] = {
            "actor states": _full(t.act) * split,
            "reference weights": _full(t.ref) * with_ref,
            "activations": a_act * split,
            "logits": (t.logits_train if training else t.logits_eval if forward else zero) * split,
            "ZeRO-3 gathered parameters": t.z3_live * split * (training or forward or syncing),
            "CUDA contexts": (ctx + with_ref * oc.process_context_bytes) * split,
        }
        out["ref", phase] = {
            "reference weights": _full(t.ref) * alone,
            "activations": (t.act_eval + t.logits_eval) * alone * forward,
            "CUDA context": ctx * alone,
        }
        crit_on = split * has_critic
        out["critic", phase] = {
            "critic states": _full(t.crit) * crit_on,
            "reward weights": _full(t.rew) * with_rew,
            "activations": c_act * crit_on,
            "CUDA contexts": (ctx + with_rew * oc.process_context_bytes) * crit_on,
        }
        out["reward", phase] = {
            "reward weights": _full(t.rew) * rew_alone,
            "activations": t.crit_eval * rew_alone * forward,
            "CUDA context": ctx * rew_alone,
        }
        if syncing:
            out["vllm", phase]["weight-sync receive buffer (one whole tensor)"] = receive * vllm_group
    return out


def host_bytes_per_node(
    actor: ModelFacts, critic: ModelFacts, cols: Columns, c: CostConstants, per_node: int
) -> np.ndarray:
    """Host memory of the fullest node, counting each GPU for the roles it holds: colocated roles add up on
    every GPU; split groups fill a node with the hungriest groups' GPUs first (an upper bound on Ray's
    packing). Per GPU: the rank itself, a trained role's Adam-offload states (and, asleep, its grads and
    optimizer), vLLM's sleeping weights, and each Ray process on it (one per role: torch, CUDA context)."""
    act = _trained(actor, cols, cols.actor_gpus, c)
    cri = _trained(critic, cols, np.where(cols.colocate_all, cols.actor_gpus, cols.critic_gpus), c)
    asleep = cols.ds_sleep & ~cols.adam_offload
    actor_gpu = act.host + np.where(asleep, act.grads + act.optimizer, 0.0)
    critic_gpu = np.where(cols.has_critic, cri.host + np.where(asleep, cri.grads + cri.optimizer, 0.0), 0.0)
    vllm_gpu = np.where(cols.vllm_sleep, BYTES_16BIT * actor.params / np.maximum(cols.tp, 1), 0.0)
    rank = c.host_bytes_per_rank
    processes = 1 + cols.has_ref + cols.has_critic + cols.has_reward + (cols.engines > 0)
    colocated = per_node * (actor_gpu + critic_gpu + vllm_gpu + rank * processes)
    groups = [
        (actor_gpu + rank * (1 + np.where(cols.actor_ref, cols.has_ref, 0)), cols.actor_gpus),
        (np.where(cols.actor_ref, 0.0, rank * cols.has_ref), cols.ref_gpus),
        (critic_gpu + rank * cols.has_critic, np.where(cols.has_critic, cols.critic_gpus, 0)),
        (rank * cols.has_reward * ~(cols.critic_reward & cols.has_critic), cols.reward_gpus),
        (np.full(cols.n, rank), np.where(cols.colocate_all, 0, cols.engines * cols.tp)),
    ]
    per_gpu = np.stack([g for g, _ in groups])
    counts = np.stack([np.asarray(n, dtype=float) for _, n in groups])
    order = np.argsort(-per_gpu, axis=0)
    left = np.full(cols.n, float(per_node))
    split = np.zeros(cols.n)
    for k in range(len(groups)):
        idx = order[k]
        take = np.minimum(left, np.take_along_axis(counts, idx[None], 0)[0])
        split += take * np.take_along_axis(per_gpu, idx[None], 0)[0]
        left -= take
    return np.where(cols.colocate_all, colocated, split)


def kv_budget_bytes(
    actor: ModelFacts, cols: Columns, capacity: float, c: CostConstants, oc: OpenRLHFConstants
) -> np.ndarray:
    """vLLM's KV cache per GPU: utilization x card - weights shard - profiling activations - non-torch."""
    weights = BYTES_16BIT * actor.params / np.maximum(cols.tp, 1)
    activations = eval_activation_bytes(actor, np.ones(cols.n), np.full(cols.n, float(oc.vllm_activation_tokens)), c)
    graphs = np.where(cols.eager, 0.0, oc.vllm_graph_bytes)
    return cols.util * capacity - weights - activations - oc.vllm_nontorch_bytes - graphs


def kv_bytes_per_token(actor: ModelFacts, tp: np.ndarray) -> np.ndarray:
    """2 (K, V) x layers x kv heads per TP shard (at least one) x head_dim x 2 bytes."""
    heads = np.maximum(actor.kv_heads / np.maximum(tp, 1), 1.0)
    return 2.0 * actor.layers * heads * actor.head_dim * BYTES_16BIT
