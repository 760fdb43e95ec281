"""`dstune estimate|search --framework openrlhf`: an OpenRLHF plan's memory per GPU group and phase, its
phase timeline, and a search over system knobs for a fixed job, with a launch script OpenRLHF's parser
accepts. The DeepSpeed-Chat commands call in here only when --framework names OpenRLHF."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ...errors import UserInputError
from ...export._files import check_same_study
from .._inputs import check_out_folder
from .._registry import DEFAULT_FRAMEWORK, framework_strategy
from ._options import add_framework_arguments, check_framework_flags, job_from_args

__all__ = ["add_framework_arguments", "check_framework_flags", "is_openrlhf", "run_estimate", "run_search"]


def is_openrlhf(args: argparse.Namespace) -> bool:
    return getattr(args, "framework", DEFAULT_FRAMEWORK) == "openrlhf"


def _job_plan(args: argparse.Namespace, gpus: int, per_node: int) -> tuple[Any, str]:
    """The plan the command starts from: the shipped example that trains this job, else dstune's starter
    (colocated on every GPU at gpu_memory_utilization 0.5, OpenRLHF's own advice); then --set."""
    from ._examples import baseline_for
    from ._plan import make_plan
    from ._spec import openrlhf_spec

    spec = openrlhf_spec()
    if args.script:
        return _script_plan(args)
    algo = spec.algorithm(args.algo or "ppo")
    example = baseline_for(args.model, gpus, algo.estimator, args.reward)
    reward = args.reward or (
        example.plan().job.reward if example else "model" if algo.estimator == "gae" else "function"
    )
    job = job_from_args(args, reward)
    if example is not None:
        plan = example.plan()
        plan = make_plan(dict(plan.values), job, plan.kept)
        basis = f"shipped example {example.label()}"
    else:
        values: dict[str, Any] = {
            "algo.advantage.estimator": algo.estimator,
            "rollout.n_samples_per_prompt": 8 if algo.group else 1,
            "rollout.batch_size": 128 if algo.group else 1024,
            "train.colocate_all": True,
            "vllm.num_engines": gpus,
            "vllm.gpu_memory_utilization": 0.5,
            "vllm.enable_sleep": True,
            "ds.enable_sleep": True,
            "vllm.enforce_eager": True,
            "ds.zero_stage": 3,
            "ds.packing_samples": True,
            "train.dynamic_batch_enable": True,
            "actor.gradient_checkpointing_enable": True,
        }
        used = _starter_gpus(args, gpus, per_node)
        values["vllm.num_engines"] = used
        nodes = -(-used // per_node)
        for role in ("actor", "ref", "critic", "reward"):
            values[f"{role}.num_nodes"] = nodes
            values[f"{role}.num_gpus_per_node"] = used // nodes
        plan = make_plan(values, job)
        basis = (
            f"no shipped example trains {algo.name} ({algo.estimator}) on {gpus} GPUs: dstune's starter plan "
            "(colocated, gpu_memory_utilization 0.5, as OpenRLHF's docs advise)"
            + ("" if used == gpus else f" on {used} GPUs, the most whose count divides train.batch_size")
        )
    if plan.estimator != algo.estimator:
        plan = plan.with_flags({"algo.advantage.estimator": algo.estimator})
    return _with_sets(plan, basis, args.assignments)


def _starter_gpus(args: argparse.Namespace, gpus: int, per_node: int) -> int:
    """The most GPUs a colocated starter can take: DeepSpeed checks every role's train batch against them."""
    from ._plan import parse_value
    from ._search import role_sizes
    from ._spec import openrlhf_spec

    sets = {k.strip(): v for k, _, v in (a.partition("=") for a in args.assignments)}
    batch = sets.get("train.batch_size", "").strip()
    train_batch = (
        int(parse_value("train.batch_size", batch)) if batch else int(openrlhf_spec().defaults["train.batch_size"])
    )
    return max(role_sizes(train_batch, gpus, per_node), default=gpus)


def _with_sets(plan: Any, basis: str, assignments: list[str]) -> tuple[Any, str]:
    """The plan with each --set FLAG=VALUE applied (typed as the flag's default), and the basis saying so."""
    from ._plan import parse_value

    changes = {}
    for text in assignments:
        key, sep, value = text.partition("=")
        if not sep:
            raise UserInputError(f"--set {text}: expected FLAG=VALUE")
        changes[key.strip()] = parse_value(key.strip(), value)
    if not changes:
        return plan, basis
    return plan.with_flags(changes), basis + "; with " + ", ".join(f"{k}={v}" for k, v in changes.items())


def version_note() -> str | None:
    """Plans and scripts are for the supported release; an installed other release is named."""
    from ...doctor._stack import package_version

    return framework_strategy("openrlhf").check_version(package_version("openrlhf"))


def _script_plan(args: argparse.Namespace) -> tuple[Any, str]:
    from ._examples import plan_from_argv, script_argv

    try:
        text = Path(args.script).read_text(encoding="utf-8")
    except OSError as error:
        raise UserInputError(f"cannot read --script {args.script}: {error.strerror}") from None
    argv = script_argv(text)
    function = "--reward.remote_url" in argv or "--train.agent_func_path" in argv
    reward = args.reward or ("function" if function else "model")
    job = job_from_args(args, reward)
    plan = plan_from_argv(argv, job)
    if args.algo and spec_estimator(args.algo) != plan.estimator:
        raise UserInputError(
            f"--algo {args.algo} disagrees with the script's --algo.advantage.estimator {plan.estimator}"
        )
    return _with_sets(plan, f"the script {args.script}", args.assignments)


def spec_estimator(algo: str) -> str:
    from ._spec import openrlhf_spec

    return openrlhf_spec().algorithm(algo).estimator


def _setup(args: argparse.Namespace) -> Any:
    from ...catalog import resolve_setup

    if args.gpus < 1:
        raise UserInputError("--gpus must be at least 1")
    return resolve_setup(
        step="ppo",
        model=args.model,
        gpus=args.gpus,
        with_critic=True,
        nodes=args.nodes,
        gpu_type=args.gpu_type,
        critic_model=args.critic_model or args.model,
    )


def run_estimate(args: argparse.Namespace) -> int:
    from ._rules import parser_notes, plan_known_issues, validate

    estimate_openrlhf = framework_strategy("openrlhf").cost()
    check_framework_flags(args)
    setup = _setup(args)
    per_node = min(setup.cluster.gpus_per_node, setup.cluster.world_size)
    plan, basis = _job_plan(args, setup.cluster.world_size, per_node)
    validate(plan, setup.cluster.world_size, per_node)
    table = estimate_openrlhf([plan], setup.model, setup.critic_model, setup.cluster)
    row = table.row(0)
    payload = {
        "framework": "openrlhf",
        "model": setup.model.name,
        "gpus": setup.cluster.world_size,
        "gpu_type": setup.cluster.gpu.name,
        "gpu_note": setup.gpu_note,
        "estimator": plan.estimator,
        "placement": plan.placement,
        "groups": {g: list(r) for g, r in plan.groups().items()},
        "plan": dict(plan.values),
        "plan_basis": basis,
        "parser_notes": parser_notes(plan),
        "known_issues": plan_known_issues(plan),
        **row,
    }
    if not row["feasible"]:
        from ._search import fitting_plan

        payload["fitting_plan"] = fitting_plan(plan, setup.model, setup.critic_model, setup.cluster)
    if args.json:
        from .._common import print_json

        print_json(payload)
    else:
        from ._render import render_plan

        render_plan(payload, title="estimate")
    return 0


def run_search(args: argparse.Namespace) -> int:
    from ...export import start_checker
    from ...record import atomic_write
    from ._explore import (
        alternatives_payload,
        explore_openrlhf,
        job_label,
        load_explore,
        parse_explore,
    )
    from ._export import check_deepspeed, write_launch_script
    from ._rules import plan_known_issues, validate
    from ._search import best_by_placement, busy_fraction, load_space, search_openrlhf

    check_framework_flags(args)
    explore = parse_explore(args.explore)
    if args.headroom is not None and not 0 <= args.headroom < 1:
        raise UserInputError(f"--headroom must be in [0, 1), got {args.headroom}")
    if args.backend == "profile":
        raise UserInputError("the profile backend has no OpenRLHF trial runner (it needs CUDA and vLLM); use simulate")
    setup = _setup(args)
    from ...doctor import target_stack

    stack, _ = target_stack(getattr(args, "stack", None), "simulate", setup.model.family, framework="openrlhf")
    gpus, per_node = setup.cluster.world_size, min(setup.cluster.gpus_per_node, setup.cluster.world_size)
    base, basis = _job_plan(args, gpus, per_node)
    start_checker()  # DeepSpeed's config class loads while the search runs
    from ...search._space import SPACES_DIR

    space_path = Path(args.space) if args.space else SPACES_DIR / "openrlhf.yaml"
    space = load_space(space_path)
    cap = None if args.headroom is None else setup.cluster.gpu.memory_bytes * (1.0 - args.headroom)
    result = search_openrlhf(base, setup.model, setup.critic_model, setup.cluster, space, args.tie_tolerance, cap)
    alternatives = (
        explore_openrlhf(
            base,
            explore,
            load_explore(space_path),
            setup.model,
            setup.critic_model,
            setup.cluster,
            space,
            args.tie_tolerance,
            cap,
        )
        if explore
        else []
    )
    estimate_openrlhf = framework_strategy("openrlhf").cost()
    try:
        validate(base, gpus, per_node)
        base_row = estimate_openrlhf([base], setup.model, setup.critic_model, setup.cluster, cap=cap).row(0)
    except UserInputError as error:
        base_row = {"feasible": False, "infeasible_reasons": [str(error)], "samples_per_s": 0.0}
    if result.pick is None:
        raise UserInputError(
            f"no plan of the {result.candidates} scored fits; the baseline: "
            f"{'; '.join(base_row['infeasible_reasons']) or 'fits'}"
        )
    pick = result.table.plans[result.pick]
    row = result.table.row(result.pick)
    study = {"framework": "openrlhf", "model": setup.model.name, "gpus": gpus, "gpu_type": setup.cluster.gpu.name}
    default = f"openrlhf-{setup.model.name}-{gpus}x{setup.cluster.gpu.name}-{pick.estimator}"
    out = Path(args.out) if args.out else Path("reports") / default
    check_out_folder(out)
    check_same_study(out, {**study, "estimator": pick.estimator})
    check_deepspeed(pick)  # every role's config at its GPUs, by DeepSpeed itself, before anything is written
    out.mkdir(parents=True, exist_ok=True)
    from ...export._script import hub_id

    hub = hub_id(setup.model)
    script = framework_strategy("openrlhf").exporter()(
        pick,
        hub,
        None,
        f"dstune pick for {setup.model.name} {pick.estimator} on {gpus} x {setup.cluster.gpu.name}",
    )
    from ...export._pins import REQUIREMENTS, requirements_text, with_preflight

    write_launch_script(out / "run_openrlhf.sh", with_preflight(script, stack))
    atomic_write(out / REQUIREMENTS, requirements_text(stack))
    speedup = row["samples_per_s"] / base_row["samples_per_s"] if base_row.get("feasible") else None
    placements = {}
    for placement, index in best_by_placement(result.table).items():
        best, plan = result.table.row(index), result.table.plans[index]
        placements[placement] = {
            "samples_per_s": best["samples_per_s"],
            "iteration_s": best["iteration_s"],
            "gpu_peak_bytes": best["gpu_peak_bytes"],
            "gpu_busy_fraction": busy_fraction(plan, best),
            "groups": {g: [*r, f"{plan.group_gpus(g)} GPUs"] for g, r in plan.groups().items()},
            "phases_s": best["phases_s"],
            "flags": plan.flags(),
        }
    payload = {
        "framework": "openrlhf",
        "model": setup.model.name,
        "gpus": gpus,
        "gpu_type": setup.cluster.gpu.name,
        "estimator": pick.estimator,
        "baseline_basis": basis,
        "baseline": base_row,
        "baseline_plan": dict(base.values),
        "candidates_scored": result.candidates,
        "refused_by_checks": result.refused,
        "search": "exhaustive over search_spaces/openrlhf.yaml, scored by the cost model (no trials)",
        "placement": pick.placement,
        "groups": {g: list(r) for g, r in pick.groups().items()},
        "plan": dict(pick.values),
        "flags": pick.flags(),
        **row,
        "speedup": speedup,
        "best_by_placement": placements,
        "speedup_basis": "both plans predicted by the same cost model: its training and weight-sync constants are "
        "fitted to the OpenRLHF paper's per-phase rows, every other OpenRLHF constant is a prior, and no published "
        "row measures two plans of one job, so no interval is given",
        "job": job_label(base),
        "explore": list(explore),
        "alternatives": alternatives_payload(alternatives),
        "launch_script": str(out / "run_openrlhf.sh"),
        "openrlhf_version": framework_strategy("openrlhf").supported_versions[0],
        "stack": stack.to_json(),
        "version_note": version_note(),
        "known_issues": plan_known_issues(pick),
    }
    atomic_write(out / "plan.json", json.dumps(payload, indent=2, default=str) + "\n")
    if args.json:
        from .._common import print_json

        print_json(payload)
    else:
        from ._render import render_alternatives, render_plan, render_speedup

        render_plan(payload, title="pick")
        render_speedup(payload)
        render_alternatives(payload)
    return 0
