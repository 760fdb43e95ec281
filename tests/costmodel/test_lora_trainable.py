"""Trainable parameters under LoRA agree with DeepSpeed-Chat's own conversion on the real models."""

import functools

import pytest

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.costmodel import estimate, trainable_params
from dstune.plan import make_plan
from dstune.profile._lora import convert_linear_layer_to_lora, only_optimize_lora_parameters
from dstune.profile._models import build_causal_lm, build_reward_model


@functools.cache
def _converted(name: str, head: str, module: str, rank: int, only: bool) -> int:
    """Trainable count after DeepSpeed-Chat's conversion (profile/_lora.py) on a meta-device model."""
    import torch

    spec = load_model(name)
    no_zero = {"zero_optimization": {"stage": 0}}
    with torch.device("meta"):
        model = (
            build_causal_lm(spec.hf_config, no_zero) if head == "lm" else build_reward_model(spec.hf_config, no_zero, 1)
        )
        assert convert_linear_layer_to_lora(model, module, rank) > 0
        if only:
            only_optimize_lora_parameters(model)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


CASES = [
    ("opt-125m", "decoder.layers.", 8),
    ("opt-1.3b", "decoder.layers.", 128),
    ("opt-6.7b", "decoder.layers.", 128),
    ("opt-1.3b", "fc", 16),
    ("llama-2-7b", "layers.", 64),
]


@pytest.mark.parametrize(("name", "module", "rank"), CASES)
@pytest.mark.parametrize("only", [False, True])
def test_sft_trainable_equals_dschat_conversion(name, module, rank, only):
    plan = make_plan("sft", {"lora_dim": rank, "lora_module_name": module, "only_optimize_lora": only})
    assert trainable_params(plan, load_model(name))["model"] == _converted(name, "lm", module, rank, only)


@pytest.mark.parametrize("only", [False, True])
def test_rm_and_critic_trainable_equal_dschat_conversion(only):
    spec = load_model("opt-350m")
    rm = make_plan("rm", {"lora_dim": 32, "lora_module_name": "decoder.layers.", "only_optimize_lora": only})
    assert trainable_params(rm, spec)["model"] == _converted("opt-350m", "value", "decoder.layers.", 32, only)
    ppo = make_plan(
        "ppo",
        {
            "actor_lora_dim": 16,
            "actor_lora_module_name": "decoder.layers.",
            "critic_lora_dim": 32,
            "critic_lora_module_name": "decoder.layers.",
            "only_optimize_lora": only,
        },
    )
    counts = trainable_params(ppo, load_model("opt-1.3b"), spec)
    assert counts["actor"] == _converted("opt-1.3b", "lm", "decoder.layers.", 16, only)
    assert counts["critic"] == _converted("opt-350m", "value", "decoder.layers.", 32, only)


def test_opt67b_lora_trains_about_half_a_billion():
    """The issue's figure for DeepSpeed-Chat's conversion of OPT-6.7B at r=128 on decoder.layers.: ~0.518B."""
    plan = make_plan("sft", {"lora_dim": 128, "lora_module_name": "decoder.layers."})
    count = trainable_params(plan, load_model("opt-6.7b"))["model"]
    assert 0.50e9 < count < 0.54e9


def test_frozen_base_weights_shrink_states_and_backward():
    """Frozen weights carry no gradient or optimizer state, and no weight-gradient GEMM."""
    cluster = make_cluster(load_gpu("A100-80G"), 8)
    spec = load_model("opt-6.7b")
    full = estimate(make_plan("sft", {"zero_stage": 2}), spec, cluster)
    lora = estimate(make_plan("sft", {"zero_stage": 2, "lora_dim": 128}), spec, cluster)
    assert lora.gpu_memory["optimizer"] < full.gpu_memory["optimizer"] / 8
    assert lora.phases["backward"] < full.phases["backward"]
    assert lora.trainable_params["model"] < full.trainable_params["model"] / 8
    assert lora.to_json()["trainable_params"] == lora.trainable_params
