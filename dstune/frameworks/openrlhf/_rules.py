"""OpenRLHF 0.11.2's hard checks on a plan, each named: the parser's post-parse asserts, the asserts
in `train()` (train_ppo_ray.py) and in its DeepSpeed strategy, and the cluster's size. A plan that
breaks one cannot start; the error names the check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from ...errors import PlanRuleError
from ._deepspeed import batch_refusal, role_config, role_worlds
from ._plan import OpenRLHFPlan
from ._spec import openrlhf_spec


class OpenRLHFCheckError(PlanRuleError):
    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"breaks OpenRLHF check '{check}': {detail}")
        self.check = check


@dataclass(frozen=True)
class Check:
    name: str
    where: str
    """Where OpenRLHF enforces it."""
    broken: Callable[[OpenRLHFPlan, int, int], str | None]
    """(plan, cluster GPUs, GPUs per node) -> why it is broken, or None."""


def _group_samples(p: OpenRLHFPlan, gpus: int, per_node: int) -> str | None:
    if openrlhf_spec().estimator_group(p.estimator) and int(p["rollout.n_samples_per_prompt"]) <= 1:
        return f"{p.estimator} requires rollout.n_samples_per_prompt > 1"
    return None


def _packing_vllm(p: OpenRLHFPlan, gpus: int, per_node: int) -> str | None:
    packs = p["ds.packing_samples"] or p["train.dynamic_batch_enable"] or int(p["ds.ring_attn_size"]) > 1
    if packs and p.engines <= 0:
        return "ds.packing_samples (set by dynamic batches and ring attention too) needs vllm.num_engines > 0"
    return None


def _async_sleep(p: OpenRLHFPlan, gpus: int, per_node: int) -> str | None:
    if p["train.async_enable"] and p["vllm.enable_sleep"] and p["train.colocate_all"]:
        return "train.async_enable is not supported with vllm.enable_sleep"
    return None


def _sample_batches(p: OpenRLHFPlan, gpus: int, per_node: int) -> str | None:
    batches = (
        int(p["rollout.n_samples_per_prompt"]) * int(p["rollout.batch_size"]) // int(p["rollout.micro_batch_size"])
    )
    procs = p.gpus_of("actor") // int(p["ds.ring_attn_size"]) // int(p["ds.tensor_parallel_size"])
    if batches < procs:
        return f"{batches} sample batches < {procs} actor processes"
    return None


def _actor_ref(p: OpenRLHFPlan, gpus: int, per_node: int) -> str | None:
    colocated = p["train.colocate_actor_ref"] or p["train.colocate_all"]
    same = all(p[f"actor.{k}"] == p[f"ref.{k}"] for k in ("num_nodes", "num_gpus_per_node"))
    if colocated and p.has_ref and not same:
        return "actor and ref need the same num_nodes and num_gpus_per_node when colocated"
    return None


def _colocate_all(p: OpenRLHFPlan, gpus: int, per_node: int) -> str | None:
    if p["train.colocate_all"] and not p["train.async_enable"] and p.engines > 0:
        if p.gpus_of("actor") != p.vllm_gpus:
            return f"actor GPUs {p.gpus_of('actor')} != vllm.num_engines x vllm.tensor_parallel_size = {p.vllm_gpus}"
    return None


def _colocate_all_bundles(p: OpenRLHFPlan, gpus: int, per_node: int) -> str | None:
    if not p["train.colocate_all"]:
        return None
    roles = [r for r in ("ref", "critic", "reward") if r in p.groups()["colocated"]]
    odd = [r for r in roles if p.gpus_of(r) != p.gpus_of("actor")]
    if odd:
        return (
            f"{', '.join(odd)} must use the actor's {p.gpus_of('actor')} GPUs (they take its placement-group bundles)"
        )
    return None


def _critic_reward(p: OpenRLHFPlan, gpus: int, per_node: int) -> str | None:
    same = all(p[f"critic.{k}"] == p[f"reward.{k}"] for k in ("num_nodes", "num_gpus_per_node"))
    if p.has_critic and p["train.colocate_critic_reward"] and not same:
        return "critic and reward need the same num_nodes and num_gpus_per_node when colocated"
    return None


def _mesh(p: OpenRLHFPlan, gpus: int, per_node: int) -> str | None:
    width = int(p["ds.ring_attn_size"]) * int(p["ds.tensor_parallel_size"])
    if p.gpus_of("actor") % width or p.gpus_of("actor") < width:
        return (
            f"actor world {p.gpus_of('actor')} is not divisible by ring_attn_size x ds.tensor_parallel_size = {width}"
        )
    return None


def _role_batches(p: OpenRLHFPlan, gpus: int, per_node: int) -> str | None:
    """Every role's engine: OpenRLHF gives each the same train batch and micro-batch, and DeepSpeed checks them
    against that role's own world size; the reference and reward configs keep them under dynamic batching."""
    if p.gpus_of("actor") % (int(p["ds.ring_attn_size"]) * int(p["ds.tensor_parallel_size"])):
        return None  # the mesh check names it
    for role, world in role_worlds(p).items():
        refusal = batch_refusal(role_config(p, role), world)
        if refusal:
            return f"DeepSpeed refuses the {role}'s config on its {world} GPUs: {refusal}"
    return None


def _second_group(p: OpenRLHFPlan, gpus: int, per_node: int) -> str | None:
    if p["train.colocate_all"] and p.has_critic and p["train.colocate_critic_reward"]:
        extra = p.gpus_of("critic")
        return (
            f"with train.colocate_all, train.colocate_critic_reward makes Ray reserve {extra} more whole GPUs for "
            "critic and reward (a second placement group); drop --train.colocate_critic_reward"
        )
    return None


def _cluster(p: OpenRLHFPlan, gpus: int, per_node: int) -> str | None:
    if p.gpus_used > gpus:
        return f"the plan places models on {p.gpus_used} GPUs, the cluster has {gpus}"
    if int(p["vllm.tensor_parallel_size"]) > per_node:
        return f"vllm.tensor_parallel_size {p['vllm.tensor_parallel_size']} exceeds the {per_node} GPUs of a node"
    for role in ("actor", "ref", "critic", "reward"):
        if int(p[f"{role}.num_gpus_per_node"]) > per_node:
            return f"{role}.num_gpus_per_node exceeds the {per_node} GPUs of a node"
    return None


def _autotp_dtype(p: OpenRLHFPlan, gpus: int, per_node: int) -> str | None:
    return None if int(p["ds.tensor_parallel_size"]) == 1 else "ds.tensor_parallel_size > 1 (AutoTP) is not modelled"


CHECKS: tuple[Check, ...] = (
    Check("group estimator needs n_samples_per_prompt > 1", "train_ppo_ray.py post-parse", _group_samples),
    Check("packing needs vLLM engines", "train_ppo_ray.py post-parse", _packing_vllm),
    Check("async forbids vLLM sleep", "train_ppo_ray.py post-parse", _async_sleep),
    Check("sample batches >= actor processes", "train_ppo_ray.py post-parse", _sample_batches),
    Check("colocated actor and ref have equal sizes", "train_ppo_ray.py train()", _actor_ref),
    Check("colocate_all needs actor GPUs = engines x TP", "train_ppo_ray.py train()", _colocate_all),
    Check("colocate_all shares the actor's bundles", "train_ppo_ray.py train() placement group", _colocate_all_bundles),
    Check("colocated critic and reward have equal sizes", "train_ppo_ray.py train()", _critic_reward),
    Check("world divisible by ring x TP", "DeepspeedStrategy mesh", _mesh),
    Check("train_batch_size = micro x GAS x world, per role", "DeepSpeedConfig batch assertion", _role_batches),
    Check("colocate_all keeps critic and reward in its bundles", "train_ppo_ray.py train() placement", _second_group),
    Check("the plan fits the cluster", "Ray placement", _cluster),
    Check("DeepSpeed AutoTP", "not modelled by dstune", _autotp_dtype),
)


def broken_checks(plan: OpenRLHFPlan, gpus: int, per_node: int) -> list[tuple[str, str]]:
    return [(c.name, why) for c in CHECKS if (why := c.broken(plan, gpus, per_node))]


def validate(plan: OpenRLHFPlan, gpus: int, per_node: int) -> None:
    """Raise on the first broken check, naming it."""
    for name, why in broken_checks(plan, gpus, per_node):
        raise OpenRLHFCheckError(name, why)


def plan_known_issues(plan: OpenRLHFPlan) -> list[str]:
    """Known issues of the supported release that this plan hits (data/known_issues.yaml entries with `plan`)."""
    hits = {"lora_with_vllm": int(plan["ds.lora.rank"] or 0) > 0 and plan.engines > 0}
    return [f"known issue {i['id']}: {i['consequence']}" for i in _plan_issues() if hits.get(i["plan"])]


@lru_cache(maxsize=1)
def _plan_issues() -> tuple[dict[str, str], ...]:
    text = resources.files(__package__).joinpath("data/known_issues.yaml").read_text(encoding="utf-8")
    return tuple(i for i in yaml.safe_load(text) if "plan" in i)


def parser_notes(plan: OpenRLHFPlan) -> list[str]:
    """What the parser changes silently (it prints a line and goes on)."""
    notes = []
    if plan["vllm.enable_sleep"] and not plan["train.colocate_all"]:
        notes.append("vllm.enable_sleep is dropped without train.colocate_all (the parser sets it False)")
    if plan["train.dynamic_batch_enable"] and not plan["ds.packing_samples"]:
        notes.append("train.dynamic_batch_enable switches ds.packing_samples on")
    return notes
