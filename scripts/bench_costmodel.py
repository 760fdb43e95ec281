"""How fast the cost model scores a whole search space.

Builds a 100,000-candidate PPO table for opt-6.7b on 8 x A100-80G (knob values
drawn from realistic ranges), scores it with the vectorised cost model, and
prints the median of several runs. Ends with `candidates_per_s: N`.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.costmodel import estimate_table
from dstune.plan import knob_fields

KNOB_VALUES = {
    "actor_zero_stage": [0, 1, 2, 3],
    "critic_zero_stage": [0, 1, 2, 3],
    "offload": [False, True],
    "offload_reference_model": [False, True],
    "offload_reward_model": [False, True],
    "actor_lora_dim": [0, 8, 64, 128],
    "critic_lora_dim": [0, 8, 64],
    "actor_lora_module_name": ["decoder.layers."],
    "critic_lora_module_name": ["decoder.layers."],
    "only_optimize_lora": [False, True],
    "actor_gradient_checkpointing": [False, True],
    "critic_gradient_checkpointing": [False, True],
    "per_device_generation_batch_size": [1, 2, 4, 8, 16, 32],
    "per_device_training_batch_size": [1, 2, 4, 8, 16, 32],
    "generation_batches": [1, 2],
    "ppo_epochs": [1, 2],
    "gradient_accumulation_steps": [1, 2, 4],
    "enable_hybrid_engine": [False, True],
    "inference_tp_size": [1, 2, 4, 8],
    "tp_gather_partition_size": [4, 8],
    "release_inference_cache": [False, True],
    "unpin_actor_parameters": [False, True],
    "max_prompt_seq_len": [256],
    "max_answer_seq_len": [256],
    "dtype": ["fp16", "bf16"],
}


def candidate_table(n: int, seed: int) -> dict[str, np.ndarray]:
    """Drawn values for the knobs above; every other PPO knob at its default, so a new knob cannot break the bench."""
    rng = np.random.default_rng(seed)
    table = {knob: np.array(values)[rng.integers(0, len(values), n)] for knob, values in KNOB_VALUES.items()}
    for field in knob_fields("ppo"):
        table.setdefault(field.name, np.full(n, field.default))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1,000 candidates, 1 repeat: checks the script runs (CI)")
    args = parser.parse_args()
    if args.quick:
        args.candidates, args.repeats = 1_000, 1
    model, critic = load_model("opt-6.7b"), load_model("opt-350m")
    cluster = make_cluster(load_gpu("A100-80G"), 8)
    table = candidate_table(args.candidates, seed=0)
    estimate_table("ppo", candidate_table(100, seed=1), model, cluster, critic_model=critic)
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        scored = estimate_table("ppo", table, model, cluster, critic_model=critic)
        seconds.append(time.perf_counter() - start)
    median = float(np.median(seconds))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}")
    print(f"candidates: {args.candidates}")
    print(f"feasible: {int(scored['feasible'].sum())}")
    print(f"score_seconds_median: {median:.4f}")
    print(f"candidates_per_s: {args.candidates / median:,.0f}")


if __name__ == "__main__":
    main()
