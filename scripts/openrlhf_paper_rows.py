"""Predicted OpenRLHF phase times on the OpenRLHF paper's own runs (arXiv 2405.11143 v1-v4): Table 3's
placements, against Table 5's per-phase seconds (generation / weight sync / logits+reward / training).

The published seconds are as issue 28 quotes them (not re-read from the paper here). What the tables
leave open is assumed and printed: PPO with a 7B/13B/70B critic and reward model of the actor's size,
1024 prompts per rollout, 1 sample each, train batch 128, prompt and answer budgets of 1024 (that era's
scripts), answers at half the budget on average, A100-80G for the paper's A800 (A800's NVLink is
400 GB/s, not 600), 8 GPUs a node. The 2024 code called vLLM in micro-batches, so generation is
comparable only loosely; training and weight sync are the phases to compare. Prints one row per run and
the ratio predicted / published for each phase.
"""

from __future__ import annotations

from typing import Any

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.costmodel._openrlhf import estimate_openrlhf
from dstune.frameworks.openrlhf import OpenRLHFJob, broken_checks, make_plan

# model, GPUs, (actor, critic, ref, reward, vLLM engines, vLLM TP), micro-batch, Adam offload + ZeRO-3
TABLE3 = [
    ("llama-2-7b", 16, (4, 4, 2, 2, 4, 1), 16, False),
    ("llama-2-13b", 32, (4, 4, 4, 4, 4, 4), 4, True),
    ("llama-2-70b", 32, (4, 4, 4, 4, 4, 4), 4, True),
]
TABLE5 = {  # generation, weight sync, logits+reward (experience), training: seconds, as issue 28 quotes them
    "llama-2-7b": (262.96, 4.32, 32.7, 171.13),
    "llama-2-13b": (372.14, 10.03, 29.58, 197.18),
    "llama-2-70b": (2252.79, 111.65, 323.38, 1800.71),
}
PHASES = ("generate", "weight sync", "experience", "train")


def paper_plan(sizes: tuple[int, ...], micro: int, offload: bool) -> Any:
    actor, critic, ref, reward, engines, tp = sizes
    values: dict[str, Any] = {
        "algo.advantage.estimator": "gae",
        "rollout.batch_size": 1024,
        "train.batch_size": 128,
        "train.micro_batch_size": micro,
        "rollout.micro_batch_size": micro,
        "data.max_len": 2048,
        "rollout.max_new_tokens": 1024,
        "vllm.num_engines": engines,
        "vllm.tensor_parallel_size": tp,
        "ds.zero_stage": 3 if offload else 2,
        "ds.adam_offload": offload,
        "ref.offload": offload,
        "reward.offload": offload,
    }
    for role, n in (("actor", actor), ("critic", critic), ("ref", ref), ("reward", reward)):
        values |= {f"{role}.num_nodes": 1, f"{role}.num_gpus_per_node": n}
    return make_plan(values, OpenRLHFJob(reward="model", prompt_tokens=1024, answer_mean_ratio=0.5))


def main() -> None:
    print("predicted (this cost model) / published (Table 5, as quoted) seconds per phase")
    print(f"{'run':<16}" + "".join(f"{p:>26}" for p in PHASES))
    for model, gpus, sizes, micro, offload in TABLE3:
        plan = paper_plan(sizes, micro, offload)
        broken = broken_checks(plan, gpus, 8)
        if broken:
            print(f"{model}/{gpus}: breaks {broken[0][0]}")
            continue
        spec = load_model(model)
        row = estimate_openrlhf([plan], spec, spec, make_cluster(load_gpu("A100-80G"), gpus)).row(0)
        cells = []
        for phase, published in zip(PHASES, TABLE5[model], strict=True):
            predicted = row["phases_s"][phase]
            cells.append(f"{predicted:8.1f} / {published:8.2f} = {predicted / published:4.2f}")
        print(f"{model + '/' + str(gpus):<16}" + "".join(f"{c:>26}" for c in cells))


if __name__ == "__main__":
    main()
