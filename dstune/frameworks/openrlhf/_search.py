"""OpenRLHF search: every system-knob combination of the space for a fixed job, scored at once by the
cost model (exhaustive and vectorised, not an Optuna study: the space is small and discrete), the space's
`refine:` knobs tried around the fastest of them, then the pick rule dstune uses everywhere: the fastest feasible plan, and among plans within the tie tolerance
of it the one with the lowest peak memory."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ...catalog import ClusterSpec, ModelSpec
from ...errors import UserInputError
from ._cost import OpenRLHFTable, estimate_openrlhf
from ._plan import PLACEMENTS, OpenRLHFPlan
from ._rules import broken_checks
from ._spec import openrlhf_spec


@dataclass(frozen=True)
class OpenRLHFSearch:
    table: OpenRLHFTable
    pick: int | None
    candidates: int
    refused: int
    """Combinations an OpenRLHF check refuses (never scored)."""


_LAYOUT_KEYS = (
    "placements",
    "split_vllm_share",
    "split_actor_share",
    "vllm.tensor_parallel_size",
    "split_gpu_memory_utilization",
)
REFINE = "refine:"
"""Prefix of the knobs tried only around the best plans of the exhaustive stage (the space's `refine:`)."""
REFINE_TOP = 32


def load_space(path: Path) -> dict[str, list[Any]]:
    """A space file: placements, the vLLM share of split plans, and lists of values of system flags only (its
    `explore:` section, the ways to widen the job, is read by `load_explore`)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UserInputError(f"cannot read search space {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise UserInputError(f"search space {path} is not YAML: {str(error).splitlines()[0]}") from None
    spec = openrlhf_spec()
    refine: dict[str, Any] = {}
    if isinstance(raw, dict):
        refine = raw.get("refine") or {}
        raw = {k: v for k, v in raw.items() if k not in ("explore", "refine")}
    if not isinstance(refine, dict) or not all(isinstance(v, list) and v for v in refine.values()):
        raise UserInputError(f"search space {path}: refine must map system flags to non-empty value lists")
    bad_refine = [k for k in refine if k not in spec.system_knobs]
    if bad_refine:
        raise UserInputError(
            f"search space {path}: refine: {bad_refine[0]} is not an OpenRLHF system flag dstune models"
        )
    if not isinstance(raw, dict) or not all(isinstance(v, list) and v for v in raw.values()):
        raise UserInputError(f"search space {path}: every entry must be a non-empty list of values")
    for key in raw:
        if key in spec.job_knobs:
            raise UserInputError(f"search space {path}: {key} is a job flag; the search keeps the job's value")
        if key not in _LAYOUT_KEYS and key not in spec.system_knobs:
            raise UserInputError(f"search space {path}: {key} is not an OpenRLHF system flag dstune models")
    missing = [k for k in _LAYOUT_KEYS if k not in raw and k != "split_gpu_memory_utilization"]
    if missing:
        raise UserInputError(f"search space {path}: missing {', '.join(missing)}")
    bad = [p for p in raw["placements"] if p not in PLACEMENTS]
    if bad:
        raise UserInputError(f"search space {path}: unknown placement {bad[0]!r}; choose from {', '.join(PLACEMENTS)}")
    return {k: list(v) for k, v in raw.items()} | {REFINE + k: list(v) for k, v in refine.items()}


def role_sizes(train_batch: int, gpus: int, per_node: int) -> list[int]:
    """GPU counts a trained or reference role can take: DeepSpeed asserts train_batch = micro x accumulation x
    the role's GPUs for every role (OpenRLHF gives each the train batch), so counts that divide the train batch,
    and that fill whole nodes once past one."""
    return [n for n in range(1, gpus + 1) if train_batch % n == 0 and (n <= per_node or n % per_node == 0)]


def _nearest(sizes: list[int], target: float, limit: int) -> int:
    fits = [n for n in sizes if n <= limit]
    return min(fits, key=lambda n: (abs(n - target), -n)) if fits else 0


def _layouts(base: OpenRLHFPlan, gpus: int, per_node: int, space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Placement and GPU counts per role on at most `gpus` GPUs: the trained roles take the sizes DeepSpeed
    accepts nearest each share, vLLM the rest (colocated: the largest accepted size)."""

    def role(name: str, count: int) -> dict[str, Any]:
        nodes = max(1, -(-count // per_node))
        return {f"{name}.num_nodes": nodes, f"{name}.num_gpus_per_node": count // nodes}

    out = []
    second = base.has_critic or base.has_reward_model
    sizes = role_sizes(int(base["train.batch_size"]), gpus, per_node)
    for placement in space["placements"]:
        for tp in space["vllm.tensor_parallel_size"]:
            if placement == "colocated":
                g = max((n for n in sizes if n % tp == 0), default=0)
                if not g:
                    continue
                values = {**role("actor", g), **role("ref", g), **role("critic", g), **role("reward", g)}
                values |= {
                    "train.colocate_all": True,
                    "train.colocate_critic_reward": False,  # else a second group of whole GPUs (train_ppo_ray.py)
                    "vllm.num_engines": g // tp,
                    "vllm.tensor_parallel_size": tp,
                    "vllm.enable_sleep": True,
                    "train.async_enable": False,
                }
                out.append(values)
                continue
            for share, actor_share in itertools.product(space["split_vllm_share"], space["split_actor_share"]):
                rest = gpus - int(round(gpus * share / tp)) * tp
                a = _nearest(sizes, rest * actor_share if second else rest, rest - (1 if second else 0))
                c = _nearest(sizes, rest - a, rest - a) if second else 0
                v = gpus - a - c  # GPUs the trained roles' sizes leave go to vLLM, in whole engines
                if v <= 0 or v % tp or a <= 0 or (second and c <= 0):
                    continue
                values = {
                    **role("actor", a),
                    **role("ref", a),
                    "train.colocate_actor_ref": True,
                    # vLLM alone on its GPUs: no DeepSpeed state beside it, so the share is not capped as colocated
                    "vllm.gpu_memory_utilization": space.get(
                        "split_gpu_memory_utilization", space.get("vllm.gpu_memory_utilization")
                    ),
                    "vllm.num_engines": v // tp,
                    "vllm.tensor_parallel_size": tp,
                    "vllm.enable_sleep": False,
                    "train.colocate_all": False,
                    "train.async_enable": placement == "async",
                }
                if base.has_critic:
                    values |= {**role("critic", c), **role("reward", c), "train.colocate_critic_reward": True}
                elif base.has_reward_model:
                    values |= role("reward", c)
                out.append(values)
    return list({repr(sorted(v.items())): v for v in out}.values())


def candidates(
    base: OpenRLHFPlan, gpus: int, per_node: int, space: dict[str, list[Any]]
) -> tuple[list[OpenRLHFPlan], int]:
    """Every distinct plan of the space for the base plan's job, and how many OpenRLHF's checks refuse."""
    knobs = [k for k in space if k not in _LAYOUT_KEYS and not k.startswith(REFINE)]
    seen: set[tuple[Any, ...]] = set()
    plans, refused = [], 0
    for layout in _layouts(base, gpus, per_node, space):
        lists = {k: space[k] for k in knobs}
        own = layout.pop("vllm.gpu_memory_utilization", None)
        if own is not None:
            lists["vllm.gpu_memory_utilization"] = own
        for combo in itertools.product(*lists.values()):
            values = dict(zip(lists, combo, strict=True)) | layout
            dynamic = values.get("train.dynamic_batch_enable", base["train.dynamic_batch_enable"])
            if dynamic and values.get("train.micro_batch_size", 1) != 1:
                continue
            if not dynamic:
                values["train.max_tokens_per_gpu"] = base["train.max_tokens_per_gpu"]
            if not layout["train.colocate_all"]:
                values["ds.enable_sleep"] = False
            values["ds.packing_samples"] = True
            key = tuple(sorted(values.items()))
            if key in seen:
                continue
            seen.add(key)
            plan = base.with_flags(values)
            if broken_checks(plan, gpus, per_node):
                refused += 1
                continue
            plans.append(plan)
    return plans, refused


def refinements(
    table: OpenRLHFTable, gpus: int, per_node: int, space: dict[str, list[Any]], top: int = REFINE_TOP
) -> tuple[list[OpenRLHFPlan], int]:
    """The space's `refine:` knobs tried on the `top` fastest feasible plans (each knob trades memory for speed:
    no recomputation, ZeRO-1's unpartitioned gradients, larger experience micro-batches; prefix caching only
    where samples share a prompt), instead of multiplying the exhaustive stage by every one of them."""
    knobs = {k.removeprefix(REFINE): v for k, v in space.items() if k.startswith(REFINE)}
    if not knobs or not table.feasible.any():
        return [], 0
    order = np.argsort(-np.where(table.feasible, table.samples_per_s, -np.inf))[: min(top, int(table.feasible.sum()))]
    seen = {tuple(sorted(p.values.items())) for p in table.plans}
    plans, refused = [], 0
    for i in order:
        base = table.plans[int(i)]
        for combo in itertools.product(*knobs.values()):
            values = dict(zip(knobs, combo, strict=True))
            if values.get("vllm.enable_prefix_caching") and int(base["rollout.n_samples_per_prompt"]) < 2:
                continue
            if base["train.dynamic_batch_enable"]:
                values.pop("rollout.micro_batch_size", None)  # experience forwards pack to rollout.max_tokens_per_gpu
            plan = base.with_flags(values)
            key = tuple(sorted(plan.values.items()))
            if key in seen:
                continue
            seen.add(key)
            if broken_checks(plan, gpus, per_node):
                refused += 1
                continue
            plans.append(plan)
    return plans, refused


def pick_index(table: OpenRLHFTable, tie_tolerance: float) -> int | None:
    ok = table.feasible
    if not ok.any():
        return None
    rate = np.where(ok, table.samples_per_s, -np.inf)
    best = float(rate.max())
    tied = np.flatnonzero(ok & (rate >= best * (1.0 - tie_tolerance)))
    return int(tied[np.argmin(table.peak[tied])])


def search_openrlhf(
    base: OpenRLHFPlan,
    model: ModelSpec,
    critic_model: ModelSpec,
    cluster: ClusterSpec,
    space: dict[str, list[Any]],
    tie_tolerance: float = 0.01,
    cap: float | None = None,
) -> OpenRLHFSearch:
    """`cap`: the GPU bytes a plan may peak at (default: the cost model's headroom)."""
    per_node = min(cluster.gpus_per_node, cluster.world_size)
    plans, refused = candidates(base, cluster.world_size, per_node, space)
    if not plans:
        raise UserInputError("the OpenRLHF search space has no plan that passes OpenRLHF's checks for this job")
    table = estimate_openrlhf(plans, model, critic_model, cluster, cap=cap)
    more, more_refused = refinements(table, cluster.world_size, per_node, space)
    if more:
        plans += more
        table = estimate_openrlhf(plans, model, critic_model, cluster, cap=cap)
    return OpenRLHFSearch(table, pick_index(table, tie_tolerance), len(plans), refused + more_refused)


def best_by_placement(table: OpenRLHFTable) -> dict[str, int]:
    """The fastest feasible plan of each placement (colocated, split, async), to show what each does."""
    out = {}
    rate = np.where(table.feasible, table.samples_per_s, -np.inf)
    for placement in ("colocated", "split", "async"):
        rows = np.array([p.placement == placement for p in table.plans]) & table.feasible
        if rows.any():
            out[placement] = int(np.flatnonzero(rows)[np.argmax(rate[rows])])
    return out


def busy_fraction(plan: OpenRLHFPlan, row: dict[str, Any]) -> float:
    """Share of GPU-seconds of an iteration that some role computes (idle groups wait in split plans)."""
    gpus = {
        "colocated": plan.gpus_of("actor"),
        "vllm": plan.vllm_gpus,
        "actor": plan.gpus_of("actor"),
        "ref": plan.gpus_of("ref"),
        "critic": plan.gpus_of("critic"),
        "reward": plan.gpus_of("reward"),
    }
    busy = sum(sum(phases.values()) * gpus[g] for g, phases in row["timeline_busy_s"].items())
    return float(busy / (row["iteration_s"] * max(plan.gpus_used, 1)))


def fitting_plan(
    plan: OpenRLHFPlan, model: ModelSpec, critic_model: ModelSpec, cluster: ClusterSpec
) -> dict[str, Any] | None:
    """For a plan that does not fit: the search's pick for the same job, as the flags it changes."""
    from ...search._space import SPACES_DIR

    result = search_openrlhf(plan, model, critic_model, cluster, load_space(SPACES_DIR / "openrlhf.yaml"))
    if result.pick is None:
        return {}
    pick = result.table.plans[result.pick]
    row = result.table.row(result.pick)
    return {
        "changes": {k: v for k, v in pick.values.items() if plan.values.get(k) != v},
        "samples_per_s": row["samples_per_s"],
        "gpu_peak_bytes": row["gpu_peak_bytes"],
        "placement": pick.placement,
    }
