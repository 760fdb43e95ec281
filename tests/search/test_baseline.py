"""DeepSpeed-Chat shipped settings as the baseline: valid for every catalog model at 1, 8 and 64 GPUs."""

import pytest

from dstune.catalog import list_models, load_model
from dstune.plan import Context, violations
from dstune.search import baseline_plan


def _critic(model):
    return load_model("opt-350m") if model.family == "opt" else model


@pytest.mark.parametrize("model", [m.name for m in list_models()])
@pytest.mark.parametrize("gpus", [1, 8, 64])
@pytest.mark.parametrize("step", ["sft", "rm", "ppo"])
def test_baseline_is_valid(model, gpus, step):
    spec = load_model(model)
    critic = _critic(spec) if step == "ppo" else None
    base = baseline_plan(step, spec, gpus, critic_model=critic)
    assert violations(base.plan, Context(world_size=gpus, model=spec, critic_model=critic)) == []
    assert base.script.startswith("DeepSpeed-Chat training/step")


def test_opt_6_7b_single_node_matches_run_6_7b_sh():
    base = baseline_plan("ppo", load_model("opt-6.7b"), 8, critic_model=load_model("opt-350m"))
    p = base.plan
    assert (p.actor_zero_stage, p.critic_zero_stage) == (3, 3)
    assert (p.per_device_generation_batch_size, p.per_device_training_batch_size) == (4, 4)
    assert p.enable_hybrid_engine and p.actor_gradient_checkpointing and not p.critic_gradient_checkpointing
    assert base.script.endswith("opt/single_node/run_6.7b.sh")


def test_opt_66b_tp_is_fitted_to_world_size():
    base = baseline_plan("ppo", load_model("opt-66b"), 4, critic_model=load_model("opt-350m"))
    assert base.plan.inference_tp_size == 4 and base.plan.tp_gather_partition_size == 4
    assert any("inference_tp_size 8 -> 4" in a for a in base.adjustments)


def test_single_gpu_and_llama():
    one = baseline_plan("ppo", load_model("opt-1.3b"), 1, critic_model=load_model("opt-350m")).plan
    assert (one.actor_zero_stage, one.gradient_accumulation_steps, one.actor_lora_dim) == (0, 2, 128)
    llama = baseline_plan("ppo", load_model("llama-2-7b"), 8, critic_model=load_model("llama-2-7b")).plan
    assert llama.offload_reference_model and llama.per_device_generation_batch_size == 1
    assert llama.actor_lora_module_name == "layers."
    sft = baseline_plan("sft", load_model("llama-2-13b"), 8).plan
    assert sft.lora_module_name == "layers." and sft.zero_stage == 3


def test_workload_overlays_the_script():
    base = baseline_plan(
        "ppo",
        load_model("tiny-opt"),
        2,
        critic_model=load_model("tiny-opt"),
        workload={"max_prompt_seq_len": 16, "max_answer_seq_len": 16, "dtype": "bf16"},
    )
    assert base.plan.max_prompt_seq_len == 16 and base.plan.dtype == "bf16"
