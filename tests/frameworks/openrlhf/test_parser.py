"""dstune's OpenRLHF flags, checks and launch scripts against 0.11.2's own parser (its __main__ block run
with train() replaced by a capture: real argparse, hierarchize and post-parse asserts, no ray/vLLM/GPU)."""

from __future__ import annotations

import shlex

import pytest

from dstune.frameworks.openrlhf import CHECKS, broken_checks, examples, make_plan, openrlhf_spec
from dstune.frameworks.openrlhf._export import launch_script, plan_argv
from dstune.frameworks.openrlhf._parser import ParserRejected, check_exact_flags, run_parser

MODEL = ["--actor.model_name_or_path", "m", "--reward.model_name_or_path", "r"]


def test_modelled_defaults_are_the_parsers(sources: tuple[str, str]) -> None:
    parsed = run_parser(MODEL, *sources)
    for flag, default in openrlhf_spec().defaults.items():
        assert parsed.values[flag] == default, flag


def test_every_modelled_flag_is_an_option(sources: tuple[str, str]) -> None:
    options = run_parser(MODEL, *sources).options
    assert {f"--{f}" for f in openrlhf_spec().defaults} <= options


@pytest.mark.parametrize("example", examples(), ids=lambda e: e.name)
def test_shipped_examples_as_the_supported_parser_reads_them(example, sources: tuple[str, str]) -> None:
    if example.rejected:
        with pytest.raises(ParserRejected, match="unrecognized arguments: " + example.rejected[0]):
            run_parser(list(example.argv), *sources)
    parsed = run_parser(example.accepted_argv, *sources)
    plan = example.plan()
    for flag, value in plan.values.items():
        if flag == "rollout.max_tokens_per_gpu" and value is None:
            continue
        assert parsed.values[flag] == value or (flag == "ds.packing_samples" and parsed.values[flag]), flag


@pytest.mark.parametrize("example", examples(), ids=lambda e: e.name)
def test_launch_script_of_each_baseline_is_accepted(example, sources: tuple[str, str]) -> None:
    plan = example.plan()
    argv = plan_argv(plan, "m", "r")
    parsed = run_parser(argv, *sources)
    check_exact_flags(argv, parsed.options)
    for flag, value in plan.flags().items():
        assert parsed.values[flag] == value, flag


def _script_argv(text: str) -> list[str]:
    tail = text.split("openrlhf.cli.train_ppo_ray", 1)[1]
    return shlex.split(tail.replace("\\\n", " "))


@pytest.mark.parametrize("estimator,n", [("group_norm", 8), ("gae", 1), ("reinforce", 1), ("rloo", 4), ("dr_grpo", 4)])
def test_written_script_parses(estimator: str, n: int, sources: tuple[str, str]) -> None:
    plan = make_plan(
        {
            "algo.advantage.estimator": estimator,
            "rollout.n_samples_per_prompt": n,
            "train.colocate_all": True,
            "vllm.num_engines": 4,
            "vllm.tensor_parallel_size": 2,
            "vllm.enable_sleep": True,
            "ds.enable_sleep": True,
            "ds.zero_stage": 3,
            "train.dynamic_batch_enable": True,
            "ds.packing_samples": True,
        }
    )
    argv = _script_argv(launch_script(plan, "meta-llama/Meta-Llama-3-8B", "r", "test"))
    parsed = run_parser(argv, *sources)
    check_exact_flags(argv, parsed.options)
    assert parsed.values["algo.advantage.estimator"] == estimator
    assert parsed.values["vllm.num_engines"] == 4


def test_a_prefix_is_refused(sources: tuple[str, str]) -> None:
    argv = MODEL + ["--vllm.num_eng", "2"]
    parsed = run_parser(argv, *sources)
    with pytest.raises(ParserRejected, match="only a prefix"):
        check_exact_flags(argv, parsed.options)


PARSER_CHECKS = {
    "group estimator needs n_samples_per_prompt > 1": {"algo.advantage.estimator": "group_norm", "vllm.num_engines": 8},
    "packing needs vLLM engines": {"ds.packing_samples": True},
    "async forbids vLLM sleep": {
        "train.async_enable": True,
        "train.colocate_all": True,
        "vllm.enable_sleep": True,
        "vllm.num_engines": 8,
    },
    "sample batches >= actor processes": {"rollout.batch_size": 4, "vllm.num_engines": 8},
}


@pytest.mark.parametrize("name", list(PARSER_CHECKS))
def test_each_post_parse_check_agrees_with_the_parser(name: str, sources: tuple[str, str]) -> None:
    assert name in {c.name for c in CHECKS}
    plan = make_plan(PARSER_CHECKS[name])
    assert name in [n for n, _ in broken_checks(plan, 64, 8)]
    with pytest.raises(ParserRejected):
        run_parser(plan_argv(plan, "m", "r"), *sources)
    fixed = make_plan(
        {
            **PARSER_CHECKS[name],
            "rollout.n_samples_per_prompt": 2,
            "vllm.num_engines": 8,
            "vllm.enable_sleep": False,
            "rollout.batch_size": 1024,
        }
    )
    assert name not in [n for n, _ in broken_checks(fixed, 64, 8)]
    run_parser(plan_argv(fixed, "m", "r"), *sources)


def test_placeholders_expand_in_the_shell_and_parse(sources: tuple[str, str], tmp_path) -> None:
    """The reward model is the user's to name; the examples' ${VAR} paths stay variables."""
    import subprocess

    plan = make_plan({"vllm.num_engines": 8, "algo.advantage.estimator": "gae"})
    text = launch_script(plan, "meta-llama/Meta-Llama-3-8B", None, "test")
    argv = _script_argv(text)
    assert "--reward.model_name_or_path" in argv
    run_parser(argv, *sources)
    script = tmp_path / "run.sh"
    script.write_text(text.replace("ray job submit", "echo ray job submit", 1))
    refused = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert refused.returncode != 0 and "set REWARD_MODEL" in refused.stderr
    ran = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, env={"REWARD_MODEL": "my/rm", "PATH": "/usr/bin:/bin"}
    )
    assert ran.returncode == 0 and "--reward.model_name_or_path my/rm" in ran.stdout
    prorl = next(e for e in examples() if e.name == "train_prorlv2_math_hybrid_engine").plan()
    echoed = subprocess.run(
        ["bash", "-c", launch_script(prorl, "m", None, "t").replace("ray job submit", "echo", 1)],
        capture_output=True,
        text=True,
        env={
            "MODEL_PATH": "q/m",
            "REWARD_FUNC_PATH": "r.py",
            "SAVE_PATH": "/s",
            "DATASET_PATH": "d",
            "PATH": "/usr/bin:/bin",
        },
    )
    assert echoed.returncode == 0 and "--actor.model_name_or_path q/m" in echoed.stdout and "/s/ckpt" in echoed.stdout


def test_lora_flags_are_written_as_the_parser_reads_them(sources: tuple[str, str]) -> None:
    """target_modules is nargs="*": written as separate names, read back as a list; a script's names round-trip."""
    from dstune.frameworks.openrlhf import plan_from_argv

    plan = make_plan({"ds.lora.rank": 16, "ds.lora.alpha": 32, "ds.lora.target_modules": "q_proj v_proj"})
    argv = _script_argv(launch_script(plan, "meta-llama/Meta-Llama-3-8B", "r", "test"))
    parsed = run_parser(argv, *sources)
    check_exact_flags(argv, parsed.options)
    assert (parsed.values["ds.lora.rank"], parsed.values["ds.lora.alpha"]) == (16, 32)
    assert parsed.values["ds.lora.target_modules"] == ["q_proj", "v_proj"]
    again = plan_from_argv(argv)
    assert again["ds.lora.target_modules"] == "q_proj v_proj" and again["ds.lora.rank"] == 16
    default = run_parser(plan_argv(make_plan({"ds.lora.rank": 8}), "m", "r"), *sources)
    assert default.values["ds.lora.target_modules"] == "all-linear"  # peft's shorthand only as the default string
