"""Plans: DeepSpeed-Chat defaults, value coercion, hard rules, and the configs DeepSpeed accepts."""

import dataclasses

import pytest

from dstune.catalog import load_model
from dstune.errors import PlanRuleError, UserInputError
from dstune.plan import (
    Context,
    knob_fields,
    make_plan,
    parse_assignments,
    to_deepspeed,
    validate,
    violations,
)

OPT = load_model("opt-1.3b")
LLAMA = load_model("llama-2-7b")


def test_defaults_are_deepspeed_chat_argparse_defaults():
    ppo = make_plan("ppo", {})
    assert (ppo.per_device_generation_batch_size, ppo.per_device_training_batch_size) == (16, 16)
    assert (ppo.max_prompt_seq_len, ppo.max_answer_seq_len) == (256, 256)
    assert (ppo.actor_zero_stage, ppo.critic_zero_stage, ppo.inference_tp_size, ppo.tp_gather_partition_size) == (
        0,
        0,
        1,
        8,
    )
    assert ppo.actor_lora_module_name == "decoder.layers." and ppo.dtype == "fp16"
    sft = make_plan("sft", {})
    assert (sft.per_device_train_batch_size, sft.max_seq_len, sft.zero_stage, sft.lora_dim) == (16, 512, 0, 0)


def test_ppo_knobs_are_the_issue_flag_names():
    names = {f.name for f in knob_fields("ppo")}
    expected = {
        "actor_zero_stage",
        "critic_zero_stage",
        "offload",
        "offload_reference_model",
        "offload_reward_model",
        "actor_lora_dim",
        "critic_lora_dim",
        "actor_lora_module_name",
        "critic_lora_module_name",
        "only_optimize_lora",
        "actor_gradient_checkpointing",
        "critic_gradient_checkpointing",
        "per_device_generation_batch_size",
        "per_device_training_batch_size",
        "generation_batches",
        "ppo_epochs",
        "gradient_accumulation_steps",
        "enable_hybrid_engine",
        "inference_tp_size",
        "tp_gather_partition_size",
        "release_inference_cache",
        "unpin_actor_parameters",
        "max_prompt_seq_len",
        "max_answer_seq_len",
        "dtype",
        "enable_ema",
    }
    assert names == expected


def test_enable_ema_parses_as_main_py_has_it():
    """step3 main.py: `--enable_ema` is store_true (default off) and a job knob (it adds the EMA checkpoint)."""
    from dstune.plan import job_knobs

    assert make_plan("ppo", {}).enable_ema is False
    assert make_plan("ppo", {"enable_ema": "true"}).enable_ema is True
    assert make_plan("ppo", {"enable_ema": "0"}).enable_ema is False
    assert "enable_ema" in job_knobs("ppo")


def test_make_plan_coerces_cli_strings():
    plan = make_plan(
        "ppo", parse_assignments("ppo", ["actor_zero_stage=3", "enable_hybrid_engine=true", "offload=0", "dtype=bf16"])
    )
    assert plan.actor_zero_stage == 3 and plan.enable_hybrid_engine is True and plan.offload is False
    assert plan.dtype == "bf16"


@pytest.mark.parametrize(
    "assignment, fragment",
    [
        ("actor_zero_stage=4", "actor_zero_stage=4"),
        ("actor_zero_stage=three", "one of 0, 1, 2, 3"),
        ("per_device_training_batch_size=0", "an integer >= 1"),
        ("enable_hybrid_engine=maybe", "true or false"),
        ("dtype=fp32", "one of fp16, bf16"),
    ],
)
def test_bad_values_name_the_knob_and_what_it_accepts(assignment, fragment):
    with pytest.raises(UserInputError, match=fragment):
        make_plan("ppo", parse_assignments("ppo", [assignment]))


def test_unknown_knob_suggests_close_names():
    with pytest.raises(UserInputError, match="actor_zero_stage"):
        make_plan("ppo", {"actor_zero_stag": 3})
    with pytest.raises(UserInputError, match="knob=value"):
        parse_assignments("ppo", ["actor_zero_stage"])


def test_plans_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_plan("ppo", {}).offload = True  # type: ignore[misc]


def _ctx(world=8, model=OPT):
    return Context(world_size=world, model=model, critic_model=load_model("opt-350m"))


def test_tp_rules_name_rule_and_values():
    plan = make_plan("ppo", {"inference_tp_size": 2, "enable_hybrid_engine": True, "actor_zero_stage": 2})
    with pytest.raises(PlanRuleError, match=r"tp_needs_zero3: inference_tp_size=2 needs actor_zero_stage=3 \(got 2\)"):
        validate(plan, _ctx())
    plan = make_plan("ppo", {"inference_tp_size": 4, "enable_hybrid_engine": True, "actor_zero_stage": 3})
    with pytest.raises(PlanRuleError, match=r"6 % 4 = 2"):
        validate(plan, _ctx(world=6))
    with pytest.raises(PlanRuleError, match=r"he_tp_cannot_shard: inference_tp_size=4 cannot run under DeepSpeed-Chat"):
        validate(plan, _ctx(world=8))


def test_deepspeed_chat_refused_zero2_he_offload_without_lora():
    values = {"actor_zero_stage": 2, "critic_zero_stage": 2, "enable_hybrid_engine": True, "offload": True}
    with pytest.raises(PlanRuleError, match="zero2_he_offload_needs_lora"):
        validate(make_plan("ppo", values), _ctx())
    validate(make_plan("ppo", {**values, "actor_lora_dim": 128}), _ctx())


def test_offload_needs_a_zero_stage_and_only_lora_needs_lora():
    assert any("offload_needs_zero" in v for v in violations(make_plan("sft", {"offload": True}), _ctx()))
    assert any("only_lora_needs_lora" in v for v in violations(make_plan("sft", {"only_optimize_lora": True}), _ctx()))


def test_lora_module_name_must_match_the_model():
    plan = make_plan("sft", {"lora_dim": 8})
    with pytest.raises(PlanRuleError, match="'decoder.layers.' matches no Linear layer of llama-2-7b"):
        validate(plan, _ctx(model=LLAMA))
    validate(make_plan("sft", {"lora_dim": 8, "lora_module_name": "layers."}), _ctx(model=LLAMA))


def test_sequence_must_fit_positions():
    with pytest.raises(PlanRuleError, match="exceeds opt-1.3b's 2048 positions"):
        validate(make_plan("ppo", {"max_prompt_seq_len": 1024, "max_answer_seq_len": 1025}), _ctx())


def test_ppo_configs_follow_deepspeed_chat_roles():
    plan = make_plan(
        "ppo",
        {
            "actor_zero_stage": 3,
            "critic_zero_stage": 2,
            "enable_hybrid_engine": True,
            "per_device_training_batch_size": 4,
            "gradient_accumulation_steps": 2,
            "offload_reference_model": True,
            "unpin_actor_parameters": True,
        },
    )
    configs = to_deepspeed(plan, world_size=8)
    assert set(configs) == {"actor", "critic", "ref", "reward"}
    actor = configs["actor"]
    assert actor["train_batch_size"] == 4 * 8 * 2 and actor["train_micro_batch_size_per_gpu"] == 4
    assert actor["hybrid_engine"]["enabled"] and actor["hybrid_engine"]["max_out_tokens"] == 512
    assert actor["hybrid_engine"]["pin_parameters"] is False
    assert actor["fp16"] == {"enabled": True, "loss_scale_window": 100}
    assert configs["ref"]["zero_optimization"]["stage"] == 3
    assert configs["ref"]["zero_optimization"]["offload_param"] == {"device": "cpu"}
    assert configs["reward"]["zero_optimization"]["stage"] == 0
    assert "hybrid_engine" not in configs["ref"] and configs["ref"]["fp16"] == {"enabled": True}


def test_bf16_uses_deepspeed_chat_bfloat16_key():
    configs = to_deepspeed(make_plan("sft", {"dtype": "bf16", "zero_stage": 2, "offload": True}), world_size=2)
    model = configs["model"]
    assert model["bfloat16"] == {"enabled": True} and "fp16" not in model
    assert model["zero_optimization"]["offload_optimizer"] == {"device": "cpu"}


def test_deepspeed_accepts_every_role_config():
    from deepspeed.runtime.config import DeepSpeedConfig

    plan = make_plan(
        "ppo",
        {
            "actor_zero_stage": 3,
            "critic_zero_stage": 3,
            "enable_hybrid_engine": True,
            "inference_tp_size": 2,
            "dtype": "bf16",
            "offload": True,
        },
    )
    for role, config in to_deepspeed(plan, world_size=8).items():
        parsed = DeepSpeedConfig(config)
        assert parsed.zero_optimization_stage == 3, role
        assert parsed.train_batch_size == config["train_batch_size"]
