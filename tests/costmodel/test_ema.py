"""`--enable_ema`: the EMA copy of the actor DeepSpeed-Chat's step 3 keeps (rlhf_engine.py `_init_ema`), and
its moving_average after every PPO micro-step (dschat/utils/utils.py)."""

import json
import os
import subprocess
import sys

import pytest

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.costmodel import estimate
from dstune.plan import make_plan

A100 = load_gpu("A100-80G")
LORA = {"actor_lora_dim": 8, "actor_lora_module_name": "decoder.layers."}


def _spec():
    from dstune.catalog._models import spec_from_hf_config

    config = {
        "model_type": "opt",
        "hidden_size": 128,
        "num_attention_heads": 4,
        "num_hidden_layers": 3,
        "ffn_dim": 512,
        "vocab_size": 512,
        "max_position_embeddings": 128,
        "word_embed_proj_dim": 128,
        "do_layer_norm_before": True,
    }
    return spec_from_hf_config("ema-opt", config)


def _ema_elements(spec, lora: dict) -> int:
    """Parameters of the EMA model as `_init_ema` builds it: the actor's causal LM, LoRA-converted like it."""
    import torch

    from dstune.profile._lora import convert_linear_layer_to_lora
    from dstune.profile._models import build_causal_lm

    with torch.device("meta"):
        model = build_causal_lm(spec.hf_config, {"zero_optimization": {"stage": 0}})
        if lora:
            convert_linear_layer_to_lora(model, lora["actor_lora_module_name"], lora["actor_lora_dim"])
    return sum(p.numel() for p in model.parameters())


def _memory(spec, gpus: int, **values):
    """(GPU parameter bytes, the estimate) of a small PPO plan with `spec` as actor and critic."""
    plan = make_plan("ppo", {"per_device_generation_batch_size": 2, "per_device_training_batch_size": 2, **values})
    e = estimate(plan, spec, make_cluster(A100, gpus), critic_model=spec)
    return e.gpu_memory["params"], e


@pytest.mark.parametrize("lora", [{}, LORA], ids=["full", "lora"])
def test_ema_copy_is_the_actor_in_16_bits_as_built_by_dschat(lora):
    spec = _spec()
    elements = _ema_elements(spec, lora)
    without, _ = _memory(spec, 1, **lora)
    with_ema, _ = _memory(spec, 1, enable_ema=True, **lora)
    assert with_ema - without == 2 * elements


def test_ema_copy_follows_the_reference_models_zero3_and_offload():
    """Stage 3 only with a ZeRO-3 actor (partitioned over the world), on the host with offload_reference_model."""
    spec = _spec()
    elements = _ema_elements(spec, LORA)
    z3 = {"actor_zero_stage": 3, "critic_zero_stage": 3, **LORA}
    without, _ = _memory(spec, 8, **z3)
    with_ema, _ = _memory(spec, 8, enable_ema=True, **z3)
    assert with_ema - without == pytest.approx(2 * elements / 8)
    off, off_est = _memory(spec, 8, offload_reference_model=True, **z3)
    off_ema, off_ema_est = _memory(spec, 8, enable_ema=True, offload_reference_model=True, **z3)
    assert off_ema == off
    assert off_ema_est.host_peak_bytes > off_est.host_peak_bytes
    z2 = {"actor_zero_stage": 2, "critic_zero_stage": 2, "offload_reference_model": True}
    assert _memory(spec, 8, enable_ema=True, **z2)[0] - _memory(spec, 8, **z2)[0] == 2 * _ema_elements(spec, {})


def test_moving_average_costs_time_after_every_micro_step_and_more_at_zero3():
    spec = load_model("opt-1.3b")
    cluster = make_cluster(A100, 8)
    critic = load_model("opt-350m")
    seconds = {}
    for stage in (2, 3):
        for ema in (False, True):
            plan = make_plan(
                "ppo",
                {
                    "actor_zero_stage": stage,
                    "critic_zero_stage": stage,
                    "enable_ema": ema,
                    "enable_hybrid_engine": True,
                },
            )
            seconds[stage, ema] = estimate(plan, spec, cluster, critic_model=critic).phases
    for stage in (2, 3):
        assert seconds[stage, True]["critic_train"] > seconds[stage, False]["critic_train"]
        assert seconds[stage, True]["actor_train"] == seconds[stage, False]["actor_train"]
    z2 = seconds[2, True]["critic_train"] - seconds[2, False]["critic_train"]
    z3 = seconds[3, True]["critic_train"] - seconds[3, False]["critic_train"]
    assert z3 > z2  # gathers both copies of every partitioned tensor


@pytest.mark.slow
def test_deepspeed_holds_the_ema_engine_in_16_bits(tmp_path):
    """DeepSpeed initialises the EMA model as `_init_ema` does (the reference's eval config, no optimizer): its
    parameters end up 16-bit (bf16 here, the CPU accelerator's), 2 bytes per element, as the model counts."""
    spec = _spec()
    script = f"""
import json, torch, deepspeed
from dstune.plan import make_plan, to_deepspeed
from dstune.profile._lora import convert_linear_layer_to_lora
from dstune.profile._models import build_causal_lm
plan = make_plan("ppo", {{"dtype": "bf16", "enable_ema": True, "actor_lora_dim": 8}})
config = to_deepspeed(plan, 1)["ref"]
model = build_causal_lm(json.loads({json.dumps(json.dumps(dict(spec.hf_config)))}), config)
convert_linear_layer_to_lora(model, plan.actor_lora_module_name, 8)
engine, *_ = deepspeed.initialize(model=model, config=config)
params = list(engine.module.parameters())
print("EMA", json.dumps({{"bytes": sum(p.numel() * p.element_size() for p in params),
                          "dtypes": sorted({{str(p.dtype) for p in params}})}}))
"""
    env = {
        **os.environ,
        "DS_ACCELERATOR": "cpu",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29541",
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
    }
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    line = next((x for x in run.stdout.splitlines() if x.startswith("EMA ")), None)
    assert line is not None, run.stderr[-2000:]
    seen = json.loads(line.removeprefix("EMA "))
    assert seen["dtypes"] == ["torch.bfloat16"]
    elements = _ema_elements(spec, LORA)
    without, _ = _memory(spec, 1, dtype="bf16", **LORA)
    with_ema, _ = _memory(spec, 1, dtype="bf16", enable_ema=True, **LORA)
    assert seen["bytes"] == with_ema - without == 2 * elements
