"""A DeepSpeed-Chat command's setup (model, critic, cluster) and plan from its options, checked."""

from __future__ import annotations

from pathlib import Path

from ...catalog import Setup, Stack
from ...catalog import resolve_setup as _resolve_setup
from ...errors import UserInputError
from ...plan import Context, Plan, make_plan, parse_assignments, step_strategy, validate
from ._options import SetupOptions


def check_setup_flags(args: SetupOptions) -> None:
    """Options the step or launcher would silently ignore, and a hostfile that is not there."""
    if getattr(args, "critic_model", None) and not step_strategy(args.step).uses_critic:
        raise UserInputError(f"--critic-model is for steps with a critic/reward model; --step {args.step} has none")
    hostfile = getattr(args, "hostfile", None)
    if hostfile is not None and not Path(hostfile).is_file():
        raise UserInputError(f"--hostfile '{hostfile}' is not a file")


def resolve_setup(args: SetupOptions) -> Setup:
    return _resolve_setup(
        step=args.step,
        model=args.model,
        gpus=args.gpus,
        with_critic=step_strategy(args.step).uses_critic,
        nodes=args.nodes,
        gpu_type=args.gpu_type,
        critic_model=args.critic_model,
    )


def resolve_plan(setup: Setup, assignments: tuple[str, ...], stack: Stack | None = None) -> Plan:
    """DeepSpeed-Chat defaults plus --set values, checked against the hard rules (its stack rules on `stack`,
    the installed one when None)."""
    plan = make_plan(setup.step, parse_assignments(setup.step, list(assignments)))
    world = setup.cluster.world_size
    validate(plan, Context(world_size=world, model=setup.model, critic_model=setup.critic_model, stack=stack))
    setup.cluster.gpu.peak_tflops(plan.dtype)
    return plan
