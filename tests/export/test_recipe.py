"""Every shipped DeepSpeed-Chat script's job reaches the exported launch script unchanged (issue 18)."""

import json
from pathlib import Path

import pytest

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.errors import UserInputError
from dstune.export import launch_script
from dstune.plan import baseline_plan, parse_script, step_strategy, system_flags
from dstune.plan._recipe import RECIPES_FILE

SHIPPED = Path(__file__).parent / "shipped"
OPT = ("opt-125m", "opt-350m", "opt-1.3b", "opt-2.7b", "opt-6.7b", "opt-13b", "opt-30b", "opt-66b")


def _cases() -> dict[str, tuple[str, str, str | None, int]]:
    """One (step, model, critic, GPUs) per shipped script some baseline takes, keyed by the script."""
    cases: dict[str, tuple[str, str, str | None, int]] = {}
    for step in ("sft", "rm", "dpo", "ppo"):
        critic = "opt-350m" if step_strategy(step).uses_critic else None
        for model, gpus in [*((m, w) for w in (1, 8, 64) for m in OPT), ("llama-2-7b", 8)]:
            try:
                script = baseline_plan(step, load_model(model), gpus, critic_model=critic and load_model(critic)).script
            except UserInputError:
                continue
            cases.setdefault(script, (step, model, critic, gpus))
    return cases


CASES = _cases()


def test_every_shipped_script_dstune_knows_is_checked():
    known = {f"DeepSpeed-Chat training/{key}" for key in json.loads(RECIPES_FILE.read_text())["scripts"]}
    assert set(CASES) == known


@pytest.mark.parametrize(("step", "model", "critic", "gpus"), list(CASES.values()), ids=list(CASES))
def test_exported_script_sets_every_job_flag_of_the_shipped_script(step, model, critic, gpus):
    spec, critic_spec = load_model(model), load_model(critic) if critic else None
    baseline = baseline_plan(step, spec, gpus, critic_model=critic_spec)
    shipped = parse_script((SHIPPED / baseline.script.removeprefix("DeepSpeed-Chat training/")).read_text())
    exported = parse_script(
        launch_script(
            baseline.plan, model=spec, critic_model=critic_spec, cluster=make_cluster(load_gpu("A100-80G"), gpus)
        )
    )
    system = system_flags(step)
    job = {k: v for k, v in shipped.items() if k not in system}
    assert job, "a shipped script with no job flags means the parser failed"
    assert {k: exported.get(k) for k in job} == job
    assert {k for k in exported if k not in system} == set(job), "a flag the shipped script lacks"


def test_llama2_sft_keeps_its_learning_rate_and_epochs():
    spec = load_model("llama-2-7b")
    plan = baseline_plan("sft", spec, 8).plan
    flags = parse_script(
        launch_script(plan, model=spec, critic_model=None, cluster=make_cluster(load_gpu("A100-80G"), 8))
    )
    assert flags["learning_rate"] == "9.65e-6" and flags["num_train_epochs"] == "4"
    assert step_strategy("sft").script.folder == "step1_supervised_finetuning"


@pytest.mark.parametrize(("step", "model", "critic", "gpus"), list(CASES.values()), ids=list(CASES))
def test_baseline_knobs_are_what_the_shipped_script_passes(step, model, critic, gpus):
    """The baseline's knobs are written out per script in dstune/steps; the script itself, expanded as bash
    expands it (its `ACTOR_ZERO_STAGE="--actor_zero_stage 3"` lines included), must agree with them."""
    import dataclasses

    spec, critic_spec = load_model(model), load_model(critic) if critic else None
    baseline = baseline_plan(step, spec, gpus, critic_model=critic_spec)
    shipped = parse_script((SHIPPED / baseline.script.removeprefix("DeepSpeed-Chat training/")).read_text())
    unexpanded = [k for k, v in shipped.items() if "$" in v and not k.endswith(("_path", "_dir"))]
    assert not unexpanded, shipped
    for field in dataclasses.fields(baseline.plan):
        if field.name not in shipped:
            continue
        value = getattr(baseline.plan, field.name)
        passed = shipped[field.name]
        assert (value is True) if isinstance(value, bool) else str(value) == passed, (field.name, value, passed)
