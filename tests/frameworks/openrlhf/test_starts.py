"""Every OpenRLHF plan dstune writes or shows as runnable starts (issue 28): a sweep of searches whose launch
script, best split / best async rows and explored alternatives each pass OpenRLHF 0.11.2's parser, DeepSpeed's
own config class for every role at that role's GPUs (configs built by the wheel's DeepspeedStrategy), and a
real local Ray placement through the wheel's train(). The cases that once failed are named."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from dstune.cli import main
from dstune.export import ConfigRejected, validate_config
from dstune.frameworks.openrlhf import OpenRLHFJob, broken_checks, examples, make_plan, plan_from_argv
from dstune.frameworks.openrlhf._export import plan_argv
from dstune.frameworks.openrlhf._parser import check_exact_flags, run_parser

SWEEP = [
    ("llama-3-8b", 8, "ppo", ["--explore", "batch"]),
    ("llama-3-8b", 8, "ppo", ["--reward", "function"]),
    ("llama-3-8b", 8, "grpo", []),
    ("llama-3-8b", 16, "ppo", []),
    ("llama-3-8b", 24, "grpo", []),
    ("llama-3-8b", 32, "reinforce++", []),
    ("qwen2.5-7b", 8, "reinforce++", []),
    ("qwen2.5-7b", 16, "grpo", []),
    ("qwen2.5-7b", 24, "ppo", []),
    ("qwen2.5-7b", 64, "grpo", []),
    ("llama-2-70b", 16, "reinforce++", []),
    ("llama-2-70b", 32, "ppo", []),
    ("llama-2-70b", 64, "grpo", []),
]


PLACEHOLDER = re.compile(r"\{\w+\}")
"""A value the user must fill in (`{wandb_token}`): it would reach the trainer as it is."""
_SHELL_OR_JSON = re.compile(r"\$\{[^}]*\}|'\{\"working_dir[^']*'")
_PREFLIGHT = re.compile(r"<<'DSTUNE_PREFLIGHT'.*?\nDSTUNE_PREFLIGHT\n", re.S)
"""The preflight's Python (export/_pins.py) has its own f-string braces; it is not a value the user supplies."""


def _search(out: Path, model: str, gpus: int, algo: str, extra: list[str]) -> dict[str, Any]:
    argv = ["search", "--framework", "openrlhf", "--model", model, "--gpus", str(gpus), "--algo", algo]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*argv, "--gpu-type", "H100-80G", *extra, "--out", str(out), "--json"]) == 0
    payload = json.loads((out / "plan.json").read_text())
    payload["script"] = (out / "run_openrlhf.sh").read_text()
    return payload


def _argv(script: str) -> list[str]:
    return shlex.split(script.split("openrlhf.cli.train_ppo_ray", 1)[1].replace("\\\n", " "), comments=True)


def runnable(payload: dict[str, Any]) -> dict[str, list[str]]:
    """Label -> train_ppo_ray arguments of everything the search shows as runnable."""
    argv = _argv(payload["script"])
    pick = plan_from_argv(argv)
    out = {"launch script": argv}
    shown = [(f"best {k}", e) for k, e in payload["best_by_placement"].items()]
    shown += [(f"alternative {e['job']}", e) for e in payload["alternatives"] if e.get("flags") is not None]
    for label, entry in shown:
        out[label] = plan_argv(pick.with_flags(dict(make_plan(entry["flags"]).values)), "m", "r")
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    root = tmp_path_factory.mktemp("sweep")
    return {f"{m}-{g}-{a}{''.join(x)}": _search(root / f"{i}", m, g, a, x) for i, (m, g, a, x) in enumerate(SWEEP)}


def deepspeed_refusals(args: Any, builders: Any) -> list[str]:
    """Each role's config as the wheel's DeepspeedStrategy builds it, checked by DeepSpeedConfig at its GPUs."""
    strategy = builders.strategy(args)
    configs = {"actor": builders.train(strategy)}
    if args.critic.model_name_or_path:
        configs["critic"] = builders.train(strategy)
    if args.algo.kl.init_coef > 0:
        configs["ref"] = builders.eval(strategy, offload=args.ref.offload)
    if not args.reward.remote_url:
        configs["reward"] = builders.eval(strategy, offload=args.reward.offload)
    refusals = []
    for role, config in configs.items():
        world = getattr(args, role).num_nodes * getattr(args, role).num_gpus_per_node
        try:
            validate_config(config, world)
        except ConfigRejected as error:
            refusals.append(f"{role}: {error}")
    return refusals


def test_the_sweep_covers_the_issue() -> None:
    assert len(SWEEP) >= 12
    assert {m for m, *_ in SWEEP} == {"llama-3-8b", "qwen2.5-7b", "llama-2-70b"}
    assert {g for _, g, *_ in SWEEP} == {8, 16, 24, 32, 64}
    assert {a for _, _, a, _ in SWEEP} == {"ppo", "grpo", "reinforce++"}


def test_every_shown_plan_passes_the_parser_and_deepspeed(
    sweep: dict[str, dict[str, Any]], builders: Any, sources: tuple[str, str]
) -> None:
    for name, payload in sweep.items():
        script = _PREFLIGHT.sub("", payload["script"])
        commands = "\n".join(line for line in script.splitlines() if not line.startswith("#"))
        assert not PLACEHOLDER.search(_SHELL_OR_JSON.sub("", commands)), name
        for label, argv in runnable(payload).items():
            parsed = run_parser(argv, *sources)
            check_exact_flags(argv, parsed.options)
            assert not deepspeed_refusals(parsed.namespace, builders), (name, label)


def test_every_shown_plan_is_placed_by_a_real_ray(
    sweep: dict[str, dict[str, Any]], place: Any, sources: tuple[str, str]
) -> None:
    for name, payload in sweep.items():
        for label, argv in runnable(payload).items():
            try:
                place(run_parser(argv, *sources).namespace, payload["gpus"])
            except Exception as error:  # noqa: BLE001 - a group never ready, a bundle overfull: name the plan
                pytest.fail(f"{name}, {label}: {type(error).__name__}: {error}")


def _grpo(gpus: int, actor: int, engines: int, tp: int) -> Any:
    """A GRPO plan with a function reward and dynamic batches, as the picks that did not start were."""
    values: dict[str, Any] = {
        "algo.advantage.estimator": "group_norm",
        "rollout.n_samples_per_prompt": 8,
        "rollout.batch_size": 128,
        "train.dynamic_batch_enable": True,
        "ds.packing_samples": True,
        "ds.zero_stage": 3,
        "vllm.num_engines": engines,
        "vllm.tensor_parallel_size": tp,
    }
    nodes = -(-actor // 8)
    for role in ("actor", "ref"):
        values |= {f"{role}.num_nodes": nodes, f"{role}.num_gpus_per_node": actor // nodes}
    if actor == gpus:
        values |= {"train.colocate_all": True, "vllm.enable_sleep": True}
    else:
        values |= {"train.colocate_actor_ref": True}
    return make_plan(values, OpenRLHFJob(reward="function"))


@pytest.mark.parametrize(
    ("plan", "gpus", "refusal"),
    [
        (_grpo(24, 24, 6, 4), 24, "128 != 1 * 5 * 24"),  # llama-3-8b GRPO on 24 GPUs: the reference's config
        (_grpo(64, 48, 2, 8), 64, "128 != 1 * 2 * 48"),  # llama-2-70b GRPO on 64 GPUs: actor+ref on 48
    ],
    ids=["8b-grpo-24", "70b-grpo-64"],
)
def test_deepspeed_refuses_what_the_rules_refuse(
    plan: Any, gpus: int, refusal: str, builders: Any, sources: tuple[str, str]
) -> None:
    """Dynamic batches set micro 1 and no train batch for actor and critic only: the reference's eval config
    keeps train.batch_size 128 and micro 1, which DeepSpeed checks on the reference's own GPUs."""
    args = run_parser(plan_argv(plan, "m", None), *sources).namespace
    refused = deepspeed_refusals(args, builders)
    assert refused and refusal in refused[0] and refused[0].startswith("ref:")
    assert "train_batch_size = micro x GAS x world, per role" in [n for n, _ in broken_checks(plan, gpus, 8)]
    fixed = plan.with_flags({"train.batch_size": 96})
    assert not deepspeed_refusals(run_parser(plan_argv(fixed, "m", None), *sources).namespace, builders)
    assert not broken_checks(fixed, gpus, 8)


def _inherited_critic_group() -> Any:
    """The 8B PPO pick on 16 GPUs: colocated, with train.colocate_critic_reward kept from the slurm example."""
    base = next(e for e in examples() if e.name == "train_ppo_ray_slurm").plan()
    values = {f"{r}.{k}": v for r in ("actor", "ref", "critic", "reward") for k, v in (("num_nodes", 2),)}
    values |= {f"{r}.num_gpus_per_node": 8 for r in ("actor", "ref", "critic", "reward")}
    values |= {"train.colocate_all": True, "train.colocate_actor_ref": False, "vllm.num_engines": 8}
    values |= {"vllm.tensor_parallel_size": 2, "vllm.enable_sleep": True}
    return base.with_flags(values)


def test_an_inherited_critic_group_is_refused(sources: tuple[str, str]) -> None:
    plan = _inherited_critic_group()
    assert plan["train.colocate_critic_reward"]
    names = [n for n, _ in broken_checks(plan, 16, 8)]
    assert "colocate_all keeps critic and reward in its bundles" in names and plan.gpus_used == 32
    assert not broken_checks(plan.with_flags({"train.colocate_critic_reward": False}), 16, 8)


def test_a_real_ray_never_places_the_inherited_critic_group(place: Any, sources: tuple[str, str]) -> None:
    from ray.exceptions import GetTimeoutError

    plan = _inherited_critic_group()
    with pytest.raises(GetTimeoutError):
        place(run_parser(plan_argv(plan, "m", "r"), *sources).namespace, 16)
    fixed = plan.with_flags({"train.colocate_critic_reward": False})
    placed = place(run_parser(plan_argv(fixed, "m", "r"), *sources).namespace, 16)
    # 16 shared bundles, each full: actor, reference, critic, reward and a TP-2 vLLM worker at 0.2 GPU each
    assert len(placed.bundles) == 16 and all(abs(v - 1.0) < 1e-9 for v in placed.bundles.values())


def test_the_wandb_placeholder_is_dropped_with_a_line(sources: tuple[str, str]) -> None:
    """The 8-GPU PPO example keeps `--logger.wandb.key '{wandb_token}'`, which the trainer would get as the key."""
    from dstune.frameworks.openrlhf._export import launch_script

    plan = next(e for e in examples() if e.name == "train_ppo_with_reward_fn").plan()
    assert "{wandb_token}" in plan.kept
    text = launch_script(plan, "m", None, "t")
    assert "# dropped --logger.wandb.key {wandb_token} (the example's placeholder)" in text
    argv = _argv(text)
    assert "--logger.wandb.key" not in argv and not PLACEHOLDER.search(" ".join(argv))
    run_parser(argv, *sources)
