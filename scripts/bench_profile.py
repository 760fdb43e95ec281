"""Profiler overhead benchmark: one tiny plan, several fresh trials, `name: value` lines.

    DS_ACCELERATOR=cpu python scripts/bench_profile.py [--trials 5] [--step ppo] [--gpus 2]

Prints the machine, the mean start-up overhead per trial (launch to the first
measured step) split into its milestones, the time after the last measured step
until the trial returned, and the coefficient of variation (std / mean) of the
measured step time, between trials (of each trial's mean) and within trials.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from pathlib import Path

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.plan import make_plan, step_strategy
from dstune.profile import run_trial, trial_device

TINY = {
    "ppo": {
        "dtype": "bf16",
        "max_prompt_seq_len": 16,
        "max_answer_seq_len": 8,
        "per_device_generation_batch_size": 2,
        "per_device_training_batch_size": 2,
    },
    "sft": {"dtype": "bf16", "max_seq_len": 24, "per_device_train_batch_size": 2},
    "rm": {"dtype": "bf16", "max_seq_len": 24, "per_device_train_batch_size": 2},
    "dpo": {"dtype": "bf16", "max_seq_len": 24, "per_device_train_batch_size": 2},
}


def _cv(values: list[float]) -> float:
    return statistics.pstdev(values) / statistics.mean(values) if len(values) > 1 else 0.0


def _machine() -> str:
    import psutil

    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--step", choices=tuple(TINY), default="ppo")
    parser.add_argument("--model", default="tiny-opt")
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--launcher", default="deepspeed")
    args = parser.parse_args()

    device = trial_device()
    model = load_model(args.model)
    plan = make_plan(args.step, TINY[args.step])
    cluster = make_cluster(load_gpu("A100-80G"), args.gpus)
    results = []
    with tempfile.TemporaryDirectory(prefix="dstune-bench-") as root:
        for index in range(args.trials):
            result = run_trial(
                plan,
                model=model,
                critic_model=model if step_strategy(args.step).uses_critic else None,
                cluster=cluster,
                trial_dir=Path(root) / f"trial-{index}",
                warmup=args.warmup,
                steps=args.steps,
                launcher=args.launcher,
            )
            if not result.ok:
                raise SystemExit(f"trial {index} ended {result.status.value}: {result.error}\n{result.log_tail}")
            results.append(result)

    print(f"machine: {_machine()}")
    print(
        f"device: {device}"
        + (" (DS_ACCELERATOR=cpu; timings check the code path, not GPU performance)" if device == "cpu" else "")
    )
    print(f"versions: {', '.join(f'{k} {v}' for k, v in results[0].versions.items())}")
    print(
        f"plan: {args.step} {args.model} world_size={args.gpus} launcher={args.launcher} "
        f"warmup={args.warmup} steps={args.steps} trials={args.trials}"
    )
    print(f"startup_s_mean: {statistics.mean(r.startup_s for r in results):.2f}")
    previous = 0.0
    names = sorted((n for n in results[0].startup if n != "measured_done"), key=results[0].startup.get)
    for name in names:
        at = statistics.mean(r.startup[name] for r in results)
        print(f"startup_{name}_s_mean: {at:.2f} (+{at - previous:.2f})")
        previous = at
    print(f"after_last_step_s_mean: {statistics.mean(r.wall_s - r.startup['measured_done'] for r in results):.2f}")
    print(f"wall_s_mean: {statistics.mean(r.wall_s for r in results):.2f}")
    means = [r.step_s for r in results]
    print(f"step_s_mean: {statistics.mean(means):.4f}")
    print(f"step_s_cv_between_trials: {_cv(means):.3f}")
    print(f"step_s_cv_within_trials_mean: {statistics.mean(_cv(list(r.step_times)) for r in results):.3f}")
    print(f"measured_fraction_of_wall: {statistics.mean(sum(r.step_times) / r.wall_s for r in results):.3f}")


if __name__ == "__main__":
    main()
