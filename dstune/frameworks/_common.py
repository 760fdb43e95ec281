"""Arguments shared by estimate, profile and search, and their resolution into specs and a plan."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from ..catalog import Setup, Stack
from ..catalog import resolve_setup as _resolve_setup
from ..errors import UserInputError
from ..plan import DEFAULT_STEP, Context, Plan, make_plan, parse_assignments, step_names, step_strategy, validate


def add_setup_arguments(parser: argparse.ArgumentParser, *, with_set: bool = True) -> None:
    parser.add_argument("--model", required=True, help="catalog name, Hugging Face id, or a local config dir/file")
    parser.add_argument("--gpus", type=int, required=True, help="total GPUs (world size)")
    parser.add_argument("--nodes", type=int, default=None, help="nodes (default: whole nodes of the GPU type)")
    parser.add_argument(
        "--gpu-type", default="auto", help="catalog GPU (see 'dstune gpus'); auto detects local GPUs via NVML (default)"
    )
    parser.add_argument(
        "--step", choices=step_names(), default=DEFAULT_STEP, help=f"RLHF step (default: {DEFAULT_STEP})"
    )
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
    from .openrlhf._commands import add_framework_arguments

    add_framework_arguments(parser)


def resolve_setup(args: argparse.Namespace) -> Setup:
    from .openrlhf._commands import check_framework_flags, is_openrlhf

    if is_openrlhf(args):
        raise UserInputError("OpenRLHF plans cannot be profiled yet: no trial runner (it needs CUDA and vLLM)")
    check_framework_flags(args)
    return _resolve_setup(
        step=args.step,
        model=args.model,
        gpus=args.gpus,
        with_critic=step_strategy(args.step).uses_critic,
        nodes=args.nodes,
        gpu_type=args.gpu_type,
        critic_model=args.critic_model,
    )


def resolve_plan(setup: Setup, assignments: list[str], stack: Stack | None = None) -> Plan:
    """DeepSpeed-Chat defaults plus --set values, checked against the hard rules (its stack rules on `stack`,
    the installed one when None)."""
    plan = make_plan(setup.step, parse_assignments(setup.step, assignments))
    world = setup.cluster.world_size
    validate(plan, Context(world_size=world, model=setup.model, critic_model=setup.critic_model, stack=stack))
    setup.cluster.gpu.peak_tflops(plan.dtype)
    return plan


_json_out: IO[str] | None = None


@contextmanager
def json_stdout() -> Iterator[None]:
    """Under --json stdout carries the JSON only: libraries print there (DeepSpeed's "Setting accelerator
    to CPU", from Python loggers and from child processes alike), so stdout points at stderr while the
    command runs and `print_json` writes to the saved stdout (file descriptor 1 too, when it is the real one)."""
    global _json_out
    previous = sys.stdout
    previous.flush()
    saved = os.dup(1) if _is_fd1(previous) else None
    if saved is not None:
        os.dup2(2, 1)
    sys.stdout = sys.stderr
    _json_out = os.fdopen(saved, "w") if saved is not None else previous
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stdout = previous
        _json_out.flush()
        if saved is not None:
            os.dup2(saved, 1)
            _json_out.close()
        _json_out = None


def _is_fd1(stream: IO[str]) -> bool:
    try:
        return stream.fileno() == 1
    except (AttributeError, OSError, ValueError):
        return False


def print_json(payload: Any) -> None:
    out = _json_out or sys.stdout
    json.dump(payload, out, indent=2, default=str)
    out.write("\n")
    out.flush()


def gib(value: float) -> str:
    return f"{value / 2**30:,.2f} GiB"


def add_stack_argument(parser: argparse.ArgumentParser) -> None:
    """--stack: the software stack the plan will run on (not necessarily this machine's)."""
    parser.add_argument(
        "--stack",
        default=None,
        metavar="NAME|local|FILE",
        help="the stack the plan will run on: a named stack (he: constraints/he.txt; dschat-2023: DeepSpeed 0.9.0 "
        "+ transformers 4.28.1), local (this machine's), or a file from the cluster (pip freeze output, a "
        "requirements file, or a saved 'dstune doctor --json'); default: simulate targets DeepSpeed-Chat's "
        "reference stack for the model family, profile this machine's",
    )
