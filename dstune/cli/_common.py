"""Arguments shared by estimate, profile and search, and their resolution into specs and a plan."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from ..catalog import ClusterSpec, ModelSpec, default_critic, load_gpu, load_model, make_cluster, resolve_gpu_type
from ..plan import STEPS, Context, Plan, make_plan, parse_assignments, validate


def add_setup_arguments(parser: argparse.ArgumentParser, *, with_set: bool = True) -> None:
    parser.add_argument("--model", required=True, help="catalog name, Hugging Face id, or a local config dir/file")
    parser.add_argument("--gpus", type=int, required=True, help="total GPUs (world size)")
    parser.add_argument("--nodes", type=int, default=None, help="nodes (default: whole nodes of the GPU type)")
    parser.add_argument(
        "--gpu-type", default="auto", help="catalog GPU (see 'dstune gpus'); auto detects local GPUs via NVML (default)"
    )
    parser.add_argument("--step", choices=STEPS, default="ppo", help="RLHF step (default: ppo)")
    parser.add_argument(
        "--critic-model",
        default=None,
        help="PPO critic/reward model (default: opt-350m for OPT actors, else the actor)",
    )
    if with_set:
        parser.add_argument(
            "--set",
            dest="assignments",
            action="append",
            default=[],
            metavar="KNOB=VALUE",
            help="set a plan knob by its DeepSpeed-Chat flag name (repeatable)",
        )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


@dataclass(frozen=True)
class Setup:
    step: str
    model: ModelSpec
    critic_model: ModelSpec | None
    cluster: ClusterSpec
    gpu_note: str

    def context(self) -> Context:
        return Context(world_size=self.cluster.world_size, model=self.model, critic_model=self.critic_model)


def resolve_setup(args: argparse.Namespace) -> Setup:
    model = load_model(args.model)
    critic = None
    if args.step == "ppo":
        critic = load_model(args.critic_model) if args.critic_model else default_critic(model)
    if args.gpu_type == "auto":
        gpu, note = resolve_gpu_type("auto")
    else:
        gpu, note = load_gpu(args.gpu_type), f"using {load_gpu(args.gpu_type).name} (--gpu-type)"
    cluster = make_cluster(gpu, args.gpus, args.nodes)
    return Setup(args.step, model, critic, cluster, note)


def resolve_plan(setup: Setup, assignments: list[str]) -> Plan:
    """DeepSpeed-Chat defaults plus --set values, checked against the hard rules."""
    plan = make_plan(setup.step, parse_assignments(setup.step, assignments))
    validate(plan, setup.context())
    setup.cluster.gpu.peak_tflops(plan.dtype)
    return plan


def print_json(payload: Any) -> None:
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def gib(value: float) -> str:
    return f"{value / 2**30:,.2f} GiB"
