"""`dstune estimate|search --framework openrlhf`: an OpenRLHF plan's memory per GPU group and phase, its
phase timeline, and a search over system knobs for a fixed job, with a launch script OpenRLHF's parser
accepts. Each command returns one record (dstune.frameworks.openrlhf._records) that every output renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import UserInputError
from ...export._files import check_same_study
from .._inputs import check_argv, check_out_folder
from ._examples import baseline_for, plan_from_argv, script_argv
from ._options import EstimateOptions, SearchOptions
from ._plan import make_plan, parse_value
from ._records import OpenRLHFEstimate, OpenRLHFSearch, placement_summary
from ._rules import parser_notes, plan_known_issues, validate
from ._spec import openrlhf_spec


def _job_plan(args: EstimateOptions, gpus: int, per_node: int) -> tuple[Any, str]:
    """The plan the command starts from: the shipped example that trains this job, else dstune's starter
    (colocated on every GPU at gpu_memory_utilization 0.5, OpenRLHF's own advice); then --set."""
    spec = openrlhf_spec()
    if args.script:
        return _script_plan(args)
    algo = spec.algorithm(args.algo or "ppo")
    example = baseline_for(args.model, gpus, algo.estimator, args.reward)
    reward = args.reward or (
        example.plan().job.reward if example else "model" if algo.estimator == "gae" else "function"
    )
    job = args.job(reward)
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


def _starter_gpus(args: EstimateOptions, gpus: int, per_node: int) -> int:
    """The most GPUs a colocated starter can take: DeepSpeed checks every role's train batch against them."""
    from ._search import role_sizes

    sets = {k.strip(): v for k, _, v in (a.partition("=") for a in args.assignments)}
    batch = sets.get("train.batch_size", "").strip()
    train_batch = (
        int(parse_value("train.batch_size", batch)) if batch else int(openrlhf_spec().defaults["train.batch_size"])
    )
    return max(role_sizes(train_batch, gpus, per_node), default=gpus)


def _with_sets(plan: Any, basis: str, assignments: tuple[str, ...]) -> tuple[Any, str]:
    """The plan with each --set FLAG=VALUE applied (typed as the flag's default), and the basis saying so."""

    changes = {}
    for text in assignments:
        key, sep, value = text.partition("=")
        if not sep:
            raise UserInputError(f"--set {text}: expected FLAG=VALUE")
        changes[key.strip()] = parse_value(key.strip(), value)
    if not changes:
        return plan, basis
    return plan.with_flags(changes), basis + "; with " + ", ".join(f"{k}={v}" for k, v in changes.items())


def version_note(framework: Any) -> str | None:
    """Plans and scripts are for the supported release; an installed other release is named."""
    return framework.check_version(framework.versions().get("openrlhf"))


def _script_plan(args: EstimateOptions) -> tuple[Any, str]:
    try:
        text = Path(str(args.script)).read_text(encoding="utf-8")
    except OSError as error:
        raise UserInputError(f"cannot read --script {args.script}: {error.strerror}") from None
    argv = script_argv(text)
    function = "--reward.remote_url" in argv or "--train.agent_func_path" in argv
    reward = args.reward or ("function" if function else "model")
    job = args.job(reward)
    plan = plan_from_argv(argv, job)
    if args.algo and spec_estimator(args.algo) != plan.estimator:
        raise UserInputError(
            f"--algo {args.algo} disagrees with the script's --algo.advantage.estimator {plan.estimator}"
        )
    return _with_sets(plan, f"the script {args.script}", args.assignments)


def spec_estimator(algo: str) -> str:

    return openrlhf_spec().algorithm(algo).estimator


def _setup(args: EstimateOptions) -> Any:
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


def _checked(args: EstimateOptions) -> None:
    check_argv(list(args.argv))
    args.check()


def run_estimate(args: EstimateOptions) -> OpenRLHFEstimate:
    from ._cost import estimate_openrlhf

    _checked(args)
    setup = _setup(args)
    per_node = min(setup.cluster.gpus_per_node, setup.cluster.world_size)
    plan, basis = _job_plan(args, setup.cluster.world_size, per_node)
    validate(plan, setup.cluster.world_size, per_node)
    row = estimate_openrlhf([plan], setup.model, setup.critic_model, setup.cluster).row(0)
    fitting = None
    if not row["feasible"]:
        from ._search import fitting_plan

        fitting = fitting_plan(plan, setup.model, setup.critic_model, setup.cluster)
    return OpenRLHFEstimate(
        model=setup.model.name,
        gpus=setup.cluster.world_size,
        gpu_type=setup.cluster.gpu.name,
        gpu_note=setup.gpu_note,
        estimator=plan.estimator,
        placement=plan.placement,
        groups={g: list(r) for g, r in plan.groups().items()},
        plan=dict(plan.values),
        plan_basis=basis,
        parser_notes=parser_notes(plan),
        known_issues=plan_known_issues(plan),
        figures=row,
        fitting_plan=fitting,
    )


def _search_checks(args: SearchOptions) -> tuple[tuple[str, ...], Any]:
    from ._explore import parse_explore

    _checked(args)
    explore = parse_explore(args.explore)
    if args.headroom is not None and not 0 <= args.headroom < 1:
        raise UserInputError(f"--headroom must be in [0, 1), got {args.headroom}")
    if args.backend == "profile":
        raise UserInputError("the profile backend has no OpenRLHF trial runner (it needs CUDA and vLLM); use simulate")
    return explore, _setup(args)


def _baseline_row(base: Any, setup: Any, cap: float | None) -> dict[str, Any]:
    from ._cost import estimate_openrlhf

    gpus, per_node = setup.cluster.world_size, min(setup.cluster.gpus_per_node, setup.cluster.world_size)
    try:
        validate(base, gpus, per_node)
        return estimate_openrlhf([base], setup.model, setup.critic_model, setup.cluster, cap=cap).row(0)
    except UserInputError as error:
        return {"feasible": False, "infeasible_reasons": [str(error)], "samples_per_s": 0.0}


def run_search(framework: Any, args: SearchOptions) -> OpenRLHFSearch:
    """Score the whole space for the baseline's job (and the --explore jobs), export the pick."""
    from ...doctor import target_stack
    from ...export import start_checker
    from ._explore import alternatives_payload, explore_openrlhf, job_label, load_explore
    from ._search import load_space, search_openrlhf

    explore, setup = _search_checks(args)
    stack, _ = target_stack(args.stack, "simulate", setup.model.family, framework=framework.name)
    gpus, per_node = setup.cluster.world_size, min(setup.cluster.gpus_per_node, setup.cluster.world_size)
    base, basis = _job_plan(args, gpus, per_node)
    start_checker()  # DeepSpeed's config class loads while the search runs
    from ...search._space import SPACES_DIR

    space_path = args.space or SPACES_DIR / "openrlhf.yaml"
    space = load_space(space_path)
    cap = None if args.headroom is None else setup.cluster.gpu.memory_bytes * (1.0 - args.headroom)
    models = (setup.model, setup.critic_model, setup.cluster)
    result = search_openrlhf(base, *models, space, args.tie_tolerance, cap)
    alternatives = (
        explore_openrlhf(base, explore, load_explore(space_path), *models, space, args.tie_tolerance, cap)
        if explore
        else []
    )
    base_row = _baseline_row(base, setup, cap)
    if result.pick is None:
        raise UserInputError(
            f"no plan of the {result.candidates} scored fits; the baseline: "
            f"{'; '.join(base_row['infeasible_reasons']) or 'fits'}"
        )
    pick = result.table.plans[result.pick]
    row = result.table.row(result.pick)
    default = f"openrlhf-{setup.model.name}-{gpus}x{setup.cluster.gpu.name}-{pick.estimator}"
    out = args.out or Path("reports") / default
    check_out_folder(out)
    study = {"framework": framework.name, "model": setup.model.name, "gpus": gpus, "gpu_type": setup.cluster.gpu.name}
    check_same_study(out, {**study, "estimator": pick.estimator})
    record = OpenRLHFSearch(
        model=setup.model.name,
        gpus=gpus,
        gpu_type=setup.cluster.gpu.name,
        estimator=pick.estimator,
        baseline_basis=basis,
        baseline=base_row,
        baseline_plan=dict(base.values),
        candidates_scored=result.candidates,
        refused_by_checks=result.refused,
        placement=pick.placement,
        groups={g: list(r) for g, r in pick.groups().items()},
        plan=dict(pick.values),
        flags=pick.flags(),
        figures=row,
        speedup=row["samples_per_s"] / base_row["samples_per_s"] if base_row.get("feasible") else None,
        best_by_placement=placement_summary(result.table),
        job=job_label(base),
        explore=list(explore),
        alternatives=alternatives_payload(alternatives),
        launch_script=str(out / "run_openrlhf.sh"),
        openrlhf_version=framework.supported_versions[0],
        stack=stack,
        version_note=version_note(framework),
        known_issues=plan_known_issues(pick),
        pick_plan=pick,
        hub=_hub(setup.model),
    )
    framework.export(record, out)
    return record


def _hub(model: Any) -> str:
    from ...export._script import hub_id

    return hub_id(model)
