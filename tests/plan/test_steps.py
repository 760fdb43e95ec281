"""Step strategies: every step answers the shared machinery's questions from its own data."""

from __future__ import annotations

import dataclasses
import random
from typing import ClassVar

import numpy as np
import pytest

from dstune.catalog import load_model
from dstune.errors import UserInputError
from dstune.plan import (
    DEFAULT_STEP,
    Context,
    baseline_plan,
    job_of,
    knob_fields,
    make_plan,
    plan_to_dict,
    redundant_rows,
    rule_reads,
    rules_for,
    step_names,
    step_strategy,
    to_deepspeed,
)

STEPS = step_names()


def test_registry_holds_deepspeed_chats_steps_and_dpo() -> None:
    assert STEPS == ("sft", "rm", "ppo", "dpo") and DEFAULT_STEP in STEPS
    with pytest.raises(Exception, match="step"):
        step_strategy("grpo")


@pytest.mark.parametrize("step", STEPS)
def test_every_knob_a_strategy_names_is_a_field_of_its_plan(step: str) -> None:
    s = step_strategy(step)
    fields = {f.name for f in knob_fields(step)}
    named = set(s.batch.knobs) | set(s.sequence_knobs) | set(s.zero_stage_knobs)
    named |= {k for role in s.lora_roles for k in (role.rank, role.module)}
    named |= {k for inert in s.inert() for k in (inert.knob, *inert.reads)}
    named |= {k for rule in rules_for(step) for k in rule_reads(rule, step)}
    assert named <= fields, named - fields
    assert len(s.batch.figures) == (2 if s.batch.inner else 1)
    assert s.plan_class.step == step and s.phases and s.script.name.endswith(".sh")


@pytest.mark.parametrize("step", STEPS)
def test_configs_files_and_job_come_from_the_strategy(step: str) -> None:
    s = step_strategy(step)
    plan = make_plan(step, {})
    configs = to_deepspeed(plan, world_size=8)
    assert set(configs) == set(s.config_files)
    job = job_of(step, plan_to_dict(plan), 8)
    micro = getattr(plan, s.batch.micro) * getattr(plan, s.batch.repeats) * 8
    assert job.batch[0] == (s.batch.figures[0], micro)
    assert f"{micro} " in job.label() and s.sample_unit in job.label()


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize(("model", "world"), [("opt-1.3b", 1), ("opt-6.7b", 8), ("opt-13b", 16), ("llama-2-7b", 8)])
def test_shipped_baseline_is_valid_for_every_step_and_layout(step: str, model: str, world: int) -> None:
    spec = load_model(model)
    critic = load_model("opt-350m") if step_strategy(step).uses_critic else None
    base = baseline_plan(step, spec, world, critic_model=critic)
    assert base.plan.step == step
    assert f"training/{step_strategy(step).script.folder}/training_scripts/" in base.script


def _random_value(field: dataclasses.Field, rng: random.Random) -> object:
    if field.name == "dtype":
        return rng.choice(["fp16", "bf16"])
    if field.name.endswith("seq_len"):
        return rng.choice([128, 1024, 4096])
    choices = {int: [0, 1, 2, 3, 4, 8], bool: [False, True], str: ["decoder.layers.", "layers.", "nope."]}
    return rng.choice(choices[type(field.default)]) if type(field.default) in choices else field.default


def _random_plan(step: str, rng: random.Random, base=None, only: str | None = None):
    """A valid plan with random values (all knobs, or only `only` changed from `base`)."""
    fields = [f for f in knob_fields(step) if only is None or f.name == only]
    for _ in range(100):
        try:
            return make_plan(step, {f.name: _random_value(f, rng) for f in fields}, base=base)
        except UserInputError:
            continue
    raise AssertionError(f"no valid random {step} plan")


@pytest.mark.parametrize("step", STEPS)
def test_rules_read_only_the_knobs_they_declare(step: str) -> None:
    """Changing a knob a rule does not declare never changes its verdict (the grid caches on the reads)."""
    rng = random.Random(0)
    ctx = Context(world_size=8, model=load_model("opt-1.3b"), critic_model=load_model("opt-350m"))
    verdicts = 0
    for _ in range(150):
        plan = _random_plan(step, rng)
        for rule in rules_for(step):
            before = rule(plan, ctx)
            verdicts += before is not None
            for name in {f.name for f in knob_fields(step)} - set(rule_reads(rule, step)):
                other = _random_plan(step, rng, base=plan, only=name)
                assert (rule(other, ctx) is None) == (before is None), (rule.name, name)
    assert verdicts  # the random plans did break rules, so the check had teeth


def test_dpo_reference_offload_is_inert_below_zero3() -> None:
    cols = {f.name: np.array([f.default, f.default]) for f in knob_fields("dpo")}
    cols["zero_stage"] = np.array([2, 3])
    cols["offload_reference_model"] = np.array([True, True])
    assert redundant_rows("dpo", cols, ("zero_stage", "offload_reference_model")).tolist() == [True, False]
    ref = to_deepspeed(make_plan("dpo", {"zero_stage": 3, "offload_reference_model": True}), world_size=8)["ref"]
    assert ref["zero_optimization"]["stage"] == 3
    assert ref["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert to_deepspeed(make_plan("dpo", {"zero_stage": 2}), world_size=8)["ref"]["zero_optimization"]["stage"] == 0


def test_a_strategy_missing_a_hook_cannot_register() -> None:
    from dstune.plan import StepStrategy, register_step
    from dstune.steps import SftPlan

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class HalfPlan(SftPlan):
        step: ClassVar[str] = "half"

    class Half(StepStrategy):  # no deepspeed_configs, baseline_scripts or script_models
        name = "half"
        plan_class = HalfPlan

    with pytest.raises(TypeError, match="abstract"):
        register_step(Half)
    assert "half" not in step_names()
