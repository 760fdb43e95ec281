"""OpenRLHF's cost model on published OOM reports (as data, citing their threads) and on the memory facts
it encodes: what each sleep leaves resident, vLLM's share, the KV budget, the timeline of split plans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.frameworks.openrlhf import OpenRLHFJob, broken_checks, examples, make_plan
from dstune.frameworks.openrlhf._cost import estimate_openrlhf
from dstune.frameworks.openrlhf._search import load_space, search_openrlhf

REPORTS = yaml.safe_load((Path(__file__).parent / "oom_reports.yaml").read_text())
SPACE = Path(__file__).resolve().parents[3] / "search_spaces" / "openrlhf.yaml"
GIB = 2.0**30


def _report_plan(report: dict[str, Any]) -> Any:
    job = OpenRLHFJob(reward=report["reward"], prompt_tokens=report["prompt_tokens"])
    return make_plan({**report["flags"], **report["unknown_most_saving"]}, job)


@pytest.mark.parametrize("report", REPORTS, ids=lambda r: r["thread"].rsplit("/", 1)[1])
def test_oom_reports(report: dict[str, Any]) -> None:
    plan = _report_plan(report)
    model = load_model(report["model"])
    cluster = make_cluster(load_gpu(report["gpu_type"]), report["gpus"])
    assert broken_checks(plan, report["gpus"], 8) == []
    row = estimate_openrlhf([plan], model, model, cluster).row(0)
    expect = report["expect"]
    assert row["feasible"] is expect["fits"], row["infeasible_reasons"]
    if expect["fits"]:
        return
    reason = row["infeasible_reasons"][0]
    assert f"{expect['group']} GPUs during {expect['phase']}" in reason
    named = reason.split("largest components (GiB): ")[1]
    for component in expect["components"]:
        assert component in named
    found = search_openrlhf(plan, model, model, cluster, load_space(SPACE))
    assert found.pick is not None
    pick = found.table.plans[found.pick]
    assert found.table.row(found.pick)["feasible"]
    for flag in (
        "algo.advantage.estimator",
        "rollout.n_samples_per_prompt",
        "rollout.batch_size",
        "train.batch_size",
        "data.max_len",
        "rollout.max_new_tokens",
        "train.max_epochs",
    ):
        assert pick[flag] == plan[flag], flag
    assert pick.gpus_used <= report["gpus"]


def _one(plan: Any, model: str = "llama-3-8b", gpus: int = 8) -> dict[str, Any]:
    spec = load_model(model)
    return estimate_openrlhf([plan], spec, spec, make_cluster(load_gpu("H100-80G"), gpus)).row(0)


COLOCATED = {
    "algo.advantage.estimator": "group_norm",
    "rollout.n_samples_per_prompt": 8,
    "rollout.batch_size": 128,
    "train.colocate_all": True,
    "vllm.num_engines": 8,
    "vllm.enable_sleep": True,
    "ds.enable_sleep": True,
    "ds.zero_stage": 3,
    "vllm.gpu_memory_utilization": 0.5,
}


def test_deepspeed_sleep_keeps_16bit_weights_whole_at_zero2() -> None:
    """DeepSpeed PR #7050 / OpenRLHF PR #808: offload_states leaves the 16-bit weights, all of them at ZeRO-2."""
    z3 = _one(make_plan(COLOCATED))["memory_per_gpu"]["colocated"]["generate"]["actor states (asleep)"]
    z2 = _one(make_plan({**COLOCATED, "ds.zero_stage": 2}))["memory_per_gpu"]["colocated"]["generate"]
    params = load_model("llama-3-8b").num_params
    assert z3 == pytest.approx(2 * params / 8)
    assert z2["actor states (asleep)"] == pytest.approx(2 * params)


def test_vllm_takes_its_utilization_while_generating_and_little_asleep() -> None:
    row = _one(make_plan(COLOCATED))
    colocated = row["memory_per_gpu"]["colocated"]
    card = row["gpu_capacity_bytes"]
    assert colocated["generate"]["vLLM (gpu_memory_utilization x card)"] == pytest.approx(0.5 * card)
    assert colocated["train"]["vLLM asleep"] < 3 * GIB


def test_lower_utilization_shrinks_the_kv_cache_and_slows_decode() -> None:
    low, high = (_one(make_plan({**COLOCATED, "vllm.gpu_memory_utilization": u})) for u in (0.3, 0.7))
    assert low["kv_cache_tokens_per_engine"] < high["kv_cache_tokens_per_engine"]
    assert low["phases_s"]["generate"] >= high["phases_s"]["generate"]


def test_a_kv_cache_smaller_than_one_sequence_does_not_fit() -> None:
    row = _one(make_plan({**COLOCATED, "vllm.gpu_memory_utilization": 0.12}))
    assert any("KV cache" in r for r in row["infeasible_reasons"])


def test_longer_answers_cost_at_least_the_tail() -> None:
    short = _one(make_plan({**COLOCATED, "rollout.max_new_tokens": 512}))
    long = _one(make_plan({**COLOCATED, "rollout.max_new_tokens": 4096, "data.max_len": 4096 + 256}))
    assert long["phase_parts_s"]["generate: decode steps"] >= 4096
    assert long["phases_s"]["generate"] > short["phases_s"]["generate"]


def test_split_groups_idle_outside_their_phases() -> None:
    plan = next(e for e in examples() if e.name == "train_ppo_ray_slurm").plan()
    row = _one(plan, gpus=16)
    busy = row["timeline_busy_s"]
    assert set(busy) == {"vllm", "actor", "critic"}
    assert busy["vllm"]["train"] == 0 and busy["vllm"]["generate"] > 0
    assert busy["actor"]["generate"] == 0 and busy["actor"]["train"] > 0
    assert row["iteration_s"] == pytest.approx(sum(row["phases_s"].values()))


def test_async_overlaps_generation_with_training() -> None:
    split = next(e for e in examples() if e.name == "train_ppo_ray_slurm").plan()
    sync, overlapped = _one(split, gpus=16), _one(split.with_values(train__async_enable=True), gpus=16)
    assert overlapped["iteration_s"] == pytest.approx(
        max(sync["phases_s"]["generate"], sync["iteration_s"] - sync["phases_s"]["generate"])
    )


def test_reference_only_with_kl_and_critic_only_for_gae() -> None:
    grpo = make_plan({**COLOCATED, "algo.kl.init_coef": 0.0})
    assert "reference weights" not in _one(grpo)["memory_per_gpu"]["colocated"]["generate"]
    assert not grpo.has_critic and make_plan({}).has_critic
    ppo = make_plan(
        {
            **COLOCATED,
            "algo.advantage.estimator": "gae",
            "rollout.n_samples_per_prompt": 1,
            "critic.num_gpus_per_node": 8,
            "reward.num_gpus_per_node": 8,
            "rollout.batch_size": 1024,
        }
    )
    assert _one(ppo)["memory_per_gpu"]["colocated"]["train"]["critic states"] > 0


def test_how_high_vllm_utilization_may_go_beside_deepspeed() -> None:
    """OpenRLHF PR #808's question: ZeRO-2's resident 16-bit weights leave vLLM less room than ZeRO-3's shard."""
    z3 = _one(make_plan(COLOCATED))["max_gpu_memory_utilization"]
    z2 = _one(make_plan({**COLOCATED, "ds.zero_stage": 2}))["max_gpu_memory_utilization"]
    assert 0 < z2 < z3 < 0.9
    split = next(e for e in examples() if e.name == "train_ppo_ray_slurm").plan()
    assert _one(split, gpus=16)["max_gpu_memory_utilization"] is None


def test_split_layouts_fill_the_cluster_with_every_role() -> None:
    """OpenRLHF#562's question (how to split the GPUs between roles) is the split layouts' share knobs."""
    from dstune.frameworks.openrlhf._search import candidates

    space = {**load_space(SPACE), "split_actor_share": [0.25, 0.5, 0.75]}
    grpo_rm = make_plan({**COLOCATED, "train.colocate_all": False}, OpenRLHFJob(reward="model"))
    plans, _ = candidates(grpo_rm, 8, 8, space)
    split = [p for p in plans if p.placement == "split"]
    assert split and all(p.gpus_used == 8 and "reward" in p.groups() for p in split)
    ppo = next(e for e in examples() if e.name == "train_ppo_ray_slurm").plan()
    plans, _ = candidates(ppo, 16, 8, space)
    shapes = {tuple(p.group_gpus(g) for g in p.groups()) for p in plans if p.placement == "split"}
    assert len(shapes) >= 2 and all(sum(s) == 16 for s in shapes)
    # DeepSpeed checks train.batch_size against each role's own GPUs: 3, 6 or 9 GPUs cannot split 128 samples
    assert all(128 % n == 0 for s in shapes for n in s[1:])


def test_lora_trains_adapters_only() -> None:
    """peft's LoraConfig as OpenRLHF builds it: base weights frozen, r x (d_in + d_out) per targeted Linear."""
    from dstune.costmodel._facts import model_facts
    from dstune.frameworks.openrlhf._cost_columns import columns, trained_params

    model, cluster = load_model("llama-3-8b"), make_cluster(load_gpu("H100-80G"), 8)
    base = make_plan({"algo.advantage.estimator": "gae", "vllm.num_engines": 8, "train.colocate_all": True})
    full, lora, qv = (
        base,
        base.with_flags({"ds.lora.rank": 16}),
        base.with_flags({"ds.lora.rank": 16, "ds.lora.target_modules": "q_proj v_proj"}),
    )
    p, trainable = trained_params(model_facts(model, "lm"), columns([full, lora, qv]))
    layer = (4096 + 4096) * 2 + (4096 + 1024) * 2 + (4096 + 14336) * 3  # Llama-3-8B: q, o, k, v, gate, up, down
    assert trainable[1] == 16 * 32 * layer and trainable[2] == 16 * 32 * ((4096 + 4096) + (4096 + 1024))
    assert trainable[0] == p[0] and p[1] == p[0] + trainable[1]
    table = estimate_openrlhf([full, lora], model, model, cluster)
    rows = [table.row(0), table.row(1)]
    assert rows[1]["phases_s"]["train"] < rows[0]["phases_s"]["train"]  # no weight-gradient GEMMs, a tiny Adam
    assert rows[1]["phases_s"]["weight sync"] >= rows[0]["phases_s"]["weight sync"]  # base + adapters, unmerged
    assert rows[1]["host_bytes_per_node"] <= rows[0]["host_bytes_per_node"]
    group = next(g for g in rows[0]["memory_per_gpu"] if "actor" in g or g == "colocated")
    states = [r["memory_per_gpu"][group]["train"] for r in rows]
    key = next(k for k in states[0] if k.startswith("actor states"))
    assert states[1][key] < states[0][key]  # no grads or Adam states for the frozen base


def test_no_check_reads_a_lora_flag() -> None:
    """--explore lora reuses one checked candidate list for every rank: that holds while no check reads LoRA."""
    from dstune.frameworks.openrlhf._search import candidates

    base = examples()[0].plan()
    space = load_space(SPACE)
    plans, _ = candidates(base.with_flags({"ds.zero_stage": 2}), 8, 8, {**space, "ds.zero_stage": [2]})
    lora = {"ds.lora.rank": 64, "ds.lora.alpha": 128, "ds.lora.target_modules": "q_proj"}
    sample = plans[:: max(1, len(plans) // 50)] + [base.with_flags({"vllm.num_engines": 0})]
    for plan in sample:
        assert broken_checks(plan, 8, 8) == broken_checks(plan.with_flags(lora), 8, 8)
    assert any(broken_checks(p, 8, 8) for p in sample)  # the sample holds a plan some check refuses
