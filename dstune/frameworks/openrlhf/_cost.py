"""OpenRLHF's iteration cost: memory per GPU group and phase, phase times, the timeline of each GPU
group, throughput and verdict, for many plans at once (numpy columns, one entry per plan).

Synchronous placements run generate -> experience -> train -> weight sync one after another: colocated
plans run every phase on all GPUs (vLLM and DeepSpeed take turns, sleeping in between); split plans
run the roles of a phase concurrently on their own GPUs and leave the others idle. Async overlaps the
next generation with this training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...catalog import ClusterSpec, ModelSpec
from ...costmodel.terms import DEFAULT_CONSTANTS, CostConstants, Hardware, model_facts
from ._cost_columns import Columns, columns
from ._cost_constants import DEFAULT_OPENRLHF_CONSTANTS, OpenRLHFConstants, backing
from ._cost_memory import PHASES, group_memory, host_bytes_per_node, kv_budget_bytes, kv_bytes_per_token
from ._cost_time import experience_seconds, generation_seconds, train_seconds, weight_sync_parts
from ._plan import OpenRLHFPlan

ANSWER_MODEL = (
    "answer length: mean = answer_mean_ratio x answer budget, tail = the budget; decode work follows the mean, "
    "and the generate phase lasts at least the tail's decode steps (a synchronous step waits for its longest answer)"
)


@dataclass
class OpenRLHFTable:
    """Predictions for every plan (index i is plans[i])."""

    plans: list[OpenRLHFPlan]
    memory: dict[tuple[str, str], dict[str, np.ndarray]]
    peak: np.ndarray
    capacity: float
    cap: float
    phases: dict[str, np.ndarray]
    """generate / experience / train / weight sync seconds (the phase windows)."""
    busy: dict[tuple[str, str], np.ndarray]
    """(group, phase) -> seconds that group computes inside the phase window."""
    parts: dict[str, np.ndarray]
    iteration: np.ndarray
    samples: np.ndarray
    tokens: np.ndarray
    kv_budget: np.ndarray
    kv_tokens: np.ndarray
    host_per_node: np.ndarray
    host_capacity: float
    reasons: list[list[str]]

    @property
    def feasible(self) -> np.ndarray:
        return np.array([not r for r in self.reasons])

    @property
    def samples_per_s(self) -> np.ndarray:
        return self.samples / self.iteration

    def max_utilization(self, i: int) -> float | None:
        """Colocated: the highest vllm.gpu_memory_utilization at which generation still fits beside what
        DeepSpeed keeps resident (OpenRLHF PR #808's question); None for plans where vLLM has its own GPUs."""
        if not self.plans[i].placement == "colocated":
            return None
        parts = self.memory["colocated", "generate"]
        vllm = "vLLM (gpu_memory_utilization x card)"
        resident = sum(float(v[i]) for k, v in parts.items() if k != vllm)
        return max(0.0, (self.cap - resident) / self.capacity)

    def groups_of(self, i: int) -> list[str]:
        return [
            g
            for g in dict.fromkeys(g for g, _ in self.memory)
            if any(float(self.memory[g, ph][k][i]) > 0 for ph in PHASES for k in self.memory[g, ph])
        ]

    def row(self, i: int) -> dict[str, Any]:
        """One plan's prediction as plain data (the CLI prints it and --json dumps it)."""
        groups = self.groups_of(i)
        memory = {
            g: {ph: {k: float(v[i]) for k, v in self.memory[g, ph].items() if v[i] > 0} for ph in PHASES}
            for g in groups
        }
        return {
            "feasible": bool(not self.reasons[i]),
            "infeasible_reasons": self.reasons[i],
            "gpu_capacity_bytes": self.capacity,
            "gpu_cap_bytes": self.cap,
            "gpu_peak_bytes": float(self.peak[i]),
            "memory_per_gpu": memory,
            "phases_s": {k: float(v[i]) for k, v in self.phases.items()},
            "phase_parts_s": {k: float(v[i]) for k, v in self.parts.items()},
            "timeline_busy_s": {g: {ph: float(self.busy[g, ph][i]) for ph in PHASES} for g in groups},
            "iteration_s": float(self.iteration[i]),
            "samples_per_s": float(self.samples_per_s[i]),
            "tokens_per_s": float(self.tokens[i] / self.iteration[i]),
            "max_gpu_memory_utilization": self.max_utilization(i),
            "kv_cache_bytes_per_gpu": float(self.kv_budget[i]),
            "kv_cache_tokens_per_engine": float(self.kv_tokens[i]),
            "host_bytes_per_node": float(self.host_per_node[i]),
            "answer_length_model": ANSWER_MODEL,
            "constants_basis": backing(),
        }


def estimate_openrlhf(
    plans: list[OpenRLHFPlan],
    model: ModelSpec,
    critic_model: ModelSpec,
    cluster: ClusterSpec,
    constants: CostConstants = DEFAULT_CONSTANTS,
    oc: OpenRLHFConstants = DEFAULT_OPENRLHF_CONSTANTS,
    cap: float | None = None,
) -> OpenRLHFTable:
    c = dataclasses.replace(constants, zero3_live_elements=oc.zero3_max_live_elements)
    actor, critic = model_facts(model, "lm"), model_facts(critic_model, "value")
    cols = columns(plans)
    hw = Hardware.of(cluster, "bf16", c)
    capacity = float(cluster.gpu.memory_bytes)
    cap = c.memory_cap_bytes(capacity) if cap is None else cap
    memory = group_memory(actor, critic, cols, capacity, c, oc)
    totals = {key: np.sum(np.stack(list(parts.values())), axis=0) for key, parts in memory.items()}
    peak = np.max(np.stack(list(totals.values())), axis=0)
    # vLLM alone on its GPUs sizes itself (utilization x card, at most the card): no headroom applies.
    checked = {k: v * (cap / capacity if k[0] == "vllm" else 1.0) for k, v in totals.items()}
    gen = generation_seconds(actor, cols, capacity, hw, c, oc)
    exp = experience_seconds(actor, critic, cols, hw, c, oc)
    trn = train_seconds(actor, critic, cols, hw, c, oc)
    sync_parts = weight_sync_parts(actor, cols, hw, c, oc)
    sync = np.sum(np.stack(list(sync_parts.values())), axis=0)
    phases, busy = _timeline(cols, gen, exp, trn, sync)
    step = phases["generate"] + phases["experience"] + phases["train"] + phases["weight sync"]
    # ppo_trainer_async.py:129: the rollout worker holds vllm_lock while generating "so weight broadcast cannot
    # overlap with generation": the period is max(generate, experience + train) + weight sync.
    overlapped = np.maximum(phases["generate"], phases["experience"] + phases["train"]) + phases["weight sync"]
    iteration = np.where(cols.async_, overlapped, step)
    kv_budget = kv_budget_bytes(actor, cols, capacity, c, oc)
    kv_tokens = np.maximum(kv_budget, 0.0) / kv_bytes_per_token(actor, cols.tp)
    per_node = min(cluster.gpus_per_node, cluster.world_size)
    host = host_bytes_per_node(actor, critic, cols, c, per_node)
    reasons = _reasons(plans, cols, memory, checked, cap, kv_tokens, host, cluster)
    parts = {f"generate: {k}": v for k, v in gen.items() if k not in ("concurrency", "decode steps")}
    parts |= {f"experience: {k}": v for k, v in exp.items()} | {f"train: {k}": v for k, v in trn.items()}
    parts |= {f"weight sync: {k}": v for k, v in sync_parts.items()}
    parts |= {"generate: sequences per decode step": gen["concurrency"], "generate: decode steps": gen["decode steps"]}
    tokens = cols.samples * (cols.prompt_len + cols.answer_mean)
    return OpenRLHFTable(
        plans,
        memory,
        peak,
        capacity,
        cap,
        phases,
        busy,
        parts,
        iteration,
        cols.samples,
        tokens,
        kv_budget,
        kv_tokens,
        host,
        float(cluster.host_memory_per_node_bytes),
        reasons,
    )


def _timeline(
    cols: Columns,
    gen: dict[str, np.ndarray],
    exp: dict[str, np.ndarray],
    trn: dict[str, np.ndarray],
    sync: np.ndarray,
) -> tuple[dict[str, np.ndarray], dict[tuple[str, str], np.ndarray]]:
    co = cols.colocated
    g = gen["prefill"] + gen["decode"] + gen["vLLM sleep/wake"]
    actor_exp = exp["actor"] + np.where(cols.actor_ref, exp["ref"], 0.0)
    ref_exp = np.where(cols.actor_ref, 0.0, exp["ref"])
    critic_exp = exp["critic"] + np.where(cols.critic_reward, exp["reward"], 0.0)
    reward_exp = np.where(cols.critic_reward & cols.has_critic, 0.0, exp["reward"])
    e = experience_wall_seconds(cols, exp)
    moves = trn["DeepSpeed offload/reload"]
    save = trn["checkpoint save (per iteration)"]
    t = np.where(co, trn["actor"] + trn["critic"] + moves, np.maximum(trn["actor"], trn["critic"])) + save
    phases = {"generate": g, "experience": e, "train": t, "weight sync": sync}
    zero = np.zeros(cols.n)
    split = ~co

    def on(mask: np.ndarray, value: np.ndarray) -> np.ndarray:
        return np.where(mask, value, zero)

    busy = {
        ("colocated", "generate"): on(co, g),
        ("colocated", "experience"): on(co, e),
        ("colocated", "train"): on(co, t),
        ("colocated", "weight sync"): on(co, sync),
        ("vllm", "generate"): on(split, g),
        ("vllm", "experience"): zero,
        ("vllm", "train"): zero,
        ("vllm", "weight sync"): on(split, sync),
        ("actor", "generate"): zero,
        ("actor", "experience"): on(split, actor_exp),
        ("actor", "train"): on(split, trn["actor"]),
        ("actor", "weight sync"): on(split, sync),
        ("ref", "generate"): zero,
        ("ref", "experience"): on(split, ref_exp),
        ("ref", "train"): zero,
        ("ref", "weight sync"): zero,
        ("critic", "generate"): zero,
        ("critic", "experience"): on(split, critic_exp),
        ("critic", "train"): on(split, trn["critic"]),
        ("critic", "weight sync"): zero,
        ("reward", "generate"): zero,
        ("reward", "experience"): on(split, reward_exp),
        ("reward", "train"): zero,
        ("reward", "weight sync"): zero,
    }
    return phases, busy


def experience_wall_seconds(cols: Columns, exp: dict[str, np.ndarray]) -> np.ndarray:
    """The experience phase as make_experience (trainer/ppo_utils/experience_maker.py) dispatches it: reward,
    actor, critic, reference in that order, each awaited (ray.get, then empty_cache) when its group is shared
    (colocate_all; actor and reference under colocate_actor_ref; critic under colocate_critic_reward, which
    first awaits the reward model); the others run on their own GPUs while the driver goes on. PPO split as
    the search lays it out is max(actor, reward) + critic + ref."""
    shared = cols.colocate_all
    waits_actor = shared | cols.actor_ref
    waits_critic = shared | cols.critic_reward
    reward_end = np.where(cols.has_reward, exp["reward"], 0.0)
    now = np.where(shared, reward_end, 0.0)
    actor_end = now + exp["actor"]
    now = np.where(waits_actor, actor_end, now)
    now = np.where(cols.has_critic & cols.critic_reward, np.maximum(now, reward_end), now)
    critic_end = now + np.where(cols.has_critic, exp["critic"], 0.0)
    now = np.where(waits_critic, critic_end, now)
    ref_end = now + np.where(cols.has_ref, exp["ref"], 0.0)
    now = np.where(waits_actor, ref_end, now)
    cache = np.where(cols.colocated, exp["empty_cache"], 0.0)
    return np.maximum.reduce([now, reward_end, actor_end, critic_end, ref_end]) + cache


def _reasons(
    plans: list[OpenRLHFPlan],
    cols: Columns,
    memory: dict[tuple[str, str], dict[str, np.ndarray]],
    totals: dict[tuple[str, str], np.ndarray],
    cap: float,
    kv_tokens: np.ndarray,
    host: np.ndarray,
    cluster: ClusterSpec,
) -> list[list[str]]:
    gib = 2.0**30
    out: list[list[str]] = []
    keys = list(totals)
    stacked = np.stack([totals[k] for k in keys])
    worst = np.argmax(stacked, axis=0)
    for i, plan in enumerate(plans):
        reasons = []
        group, phase = keys[int(worst[i])]
        if stacked[worst[i], i] > cap:
            parts = memory[group, phase]
            ranked = sorted(parts, key=lambda k: -float(parts[k][i]))[:3]
            named = ", ".join(f"{k} {float(parts[k][i]) / gib:.1f}" for k in ranked)
            reasons.append(
                f"does not fit: {group} GPUs during {phase} need {stacked[worst[i], i] / gib:.1f} GiB of "
                f"{cap / gib:.1f} GiB usable; largest components (GiB): {named}"
            )
        if plan.engines and kv_tokens[i] < float(plan["data.max_len"]):
            reasons.append(
                f"does not fit: vLLM's KV cache holds {kv_tokens[i]:,.0f} tokens per engine, less than one "
                f"data.max_len = {plan['data.max_len']} sequence (vLLM refuses to start)"
            )
        if host[i] > cluster.host_memory_per_node_bytes:
            reasons.append(
                f"does not fit: host memory per node {host[i] / gib:.0f} GiB > "
                f"{cluster.host_memory_per_node_bytes / gib:.0f} GiB"
            )
        out.append(reasons)
    return out
