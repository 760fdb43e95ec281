"""The phase model as OpenRLHF 0.11.2 runs an iteration (issue 28): the experience phase waits as
make_experience waits, async training cannot sync weights during generation, a group inside one node
talks over the node's link, and host memory counts each node's GPUs for the roles they hold."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.costmodel import DEFAULT_CONSTANTS
from dstune.costmodel._facts import model_facts
from dstune.frameworks.openrlhf import OpenRLHFJob, broken_checks, examples, make_plan
from dstune.frameworks.openrlhf._cost import estimate_openrlhf
from dstune.frameworks.openrlhf._cost_columns import columns
from dstune.frameworks.openrlhf._cost_memory import _trained


def _row(plan: Any, gpus: int, model: str = "llama-3-8b") -> dict[str, Any]:
    assert not broken_checks(plan, gpus, 8)
    spec = load_model(model)
    return estimate_openrlhf([plan], spec, spec, make_cluster(load_gpu("H100-80G"), gpus)).row(0)


def _slurm() -> Any:
    """examples/scripts/train_ppo_ray_slurm.sh: actor+ref 4, critic+reward 4, vLLM 4 x TP2 on 16 GPUs."""
    return next(e for e in examples() if e.name == "train_ppo_ray_slurm").plan()


def test_ppo_experience_waits_as_make_experience_does() -> None:
    """Reward and actor start together; the critic waits for the reward model (colocate_critic_reward), and
    the reference for the critic (the driver awaits each shared group): max(actor, reward) + critic + ref."""
    row = _row(_slurm(), 16)
    part = {k.split(": ")[1]: v for k, v in row["phase_parts_s"].items() if k.startswith("experience: ")}
    want = max(part["actor"], part["reward"]) + part["critic"] + part["ref"]
    assert row["phases_s"]["experience"] == pytest.approx(want)
    colocated = _row(_slurm().with_flags(_colocated(16)), 16)
    part = {k.split(": ")[1]: v for k, v in colocated["phase_parts_s"].items() if k.startswith("experience: ")}
    assert colocated["phases_s"]["experience"] == pytest.approx(sum(part.values()))


def _colocated(gpus: int) -> dict[str, Any]:
    values: dict[str, Any] = {"train.colocate_all": True, "train.colocate_actor_ref": False}
    values |= {"train.colocate_critic_reward": False, "vllm.num_engines": gpus // 2, "vllm.enable_sleep": True}
    for role in ("actor", "ref", "critic", "reward"):
        values |= {f"{role}.num_nodes": gpus // 8, f"{role}.num_gpus_per_node": 8}
    return values


def test_async_never_syncs_weights_during_generation() -> None:
    """ppo_trainer_async.py: generation holds vllm_lock so the weight broadcast waits: max(G, E + T) + S.
    Long tails (16K budget, mean 5% of it) make generation the longer side, where the lock shows."""
    values: dict[str, Any] = {"algo.advantage.estimator": "group_norm", "rollout.n_samples_per_prompt": 8}
    values |= {"rollout.batch_size": 128, "ds.zero_stage": 3, "train.colocate_actor_ref": True}
    values |= {"vllm.num_engines": 4, "ds.packing_samples": True, "train.async_enable": True}
    values |= {"rollout.max_new_tokens": 16384, "data.max_len": 16640, "train.dynamic_batch_enable": True}
    values |= {"train.max_tokens_per_gpu": 16640, "actor.num_gpus_per_node": 4, "ref.num_gpus_per_node": 4}
    row = _row(make_plan(values, OpenRLHFJob(reward="function", answer_mean_ratio=0.05)), 8)
    g, e, t, s = (row["phases_s"][k] for k in ("generate", "experience", "train", "weight sync"))
    assert g > e + t and s > 0
    assert row["iteration_s"] == pytest.approx(g + s)


def test_a_group_inside_one_node_uses_the_node_link() -> None:
    """The slurm example's 4-GPU actor trains as fast on two 8-GPU nodes as on one 16-GPU node: its
    placement group packs it into one node. Before, every group was priced at the inter-node link."""
    plan = _slurm().with_flags({"ds.adam_offload": False})  # CPU Adam's pace depends on ranks per node
    spec, gpu = load_model("llama-3-8b"), load_gpu("H100-80G")
    two = estimate_openrlhf([plan], spec, spec, make_cluster(gpu, 16, 2, inter_node_in_GB_per_sec=12.5)).row(0)
    one = estimate_openrlhf([plan], spec, spec, make_cluster(gpu, 16, 1)).row(0)
    assert two["phase_parts_s"]["train: actor"] == pytest.approx(one["phase_parts_s"]["train: actor"])


def test_host_memory_counts_each_roles_gpus() -> None:
    """Adam offload keeps fp32 master, m and v (12 bytes per parameter) on the host, sharded over the actor's
    2 GPUs; the node's 6 vLLM GPUs hold none of it. Before, all 8 GPUs were priced as actor GPUs."""
    values: dict[str, Any] = {"algo.advantage.estimator": "group_norm", "rollout.n_samples_per_prompt": 8}
    values |= {"rollout.batch_size": 128, "ds.zero_stage": 3, "ds.adam_offload": True}
    values |= {"train.colocate_actor_ref": True, "vllm.num_engines": 6, "ds.packing_samples": True}
    values |= {f"{r}.num_gpus_per_node": 2 for r in ("actor", "ref")}
    plan = make_plan(values, OpenRLHFJob(reward="function"))
    actor = _trained(model_facts(load_model("llama-3-8b"), "lm"), columns([plan]), np.array([2]), DEFAULT_CONSTANTS)
    assert float(actor.host[0]) > 12.0 * 8e9 / 2  # fp32 master, m and v of 8B, sharded over 2 GPUs, at least
    # two actor GPUs with the reference's process beside each, six vLLM GPUs with one process each
    processes = 2 * 2 + 6
    want = 2 * float(actor.host[0]) + processes * DEFAULT_CONSTANTS.host_bytes_per_rank
    assert _row(plan, 8)["host_bytes_per_node"] == pytest.approx(want)


def test_zero_communication_hides_as_in_the_rest_of_dstune() -> None:
    """70B at ZeRO-3: training and experience forwards hide comm_overlap of the shorter of compute and ZeRO's
    gathers (dstune.costmodel._time.overlapped), as DeepSpeed-Chat's terms do; none hidden is slower."""
    import dataclasses

    from dstune.costmodel import DEFAULT_CONSTANTS

    plan, spec = _slurm().with_flags({"ds.adam_offload": False}), load_model("llama-2-70b")
    cluster = make_cluster(load_gpu("H100-80G"), 16)
    hidden = estimate_openrlhf([plan], spec, spec, cluster).row(0)["phase_parts_s"]
    exposed = dataclasses.replace(DEFAULT_CONSTANTS, comm_overlap=0.0)
    none = estimate_openrlhf([plan], spec, spec, cluster, constants=exposed).row(0)["phase_parts_s"]
    assert hidden["train: actor"] < 0.97 * none["train: actor"]
    assert hidden["experience: ref"] < none["experience: ref"]
