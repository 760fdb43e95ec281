"""The Hybrid Engine's fused q/k/v copy doubles only weights the optimizer's flat 16-bit buffer holds: LoRA's
frozen weights are in no optimizer group, so pointing them into the fused tensor frees their old storage."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.costmodel import _memory as mem
from dstune.costmodel import estimate, model_facts

SPEC = {
    "model_type": "opt",
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "ffn_dim": 256,
    "vocab_size": 128,
    "max_position_embeddings": 64,
    "word_embed_proj_dim": 64,
    "do_layer_norm_before": True,
}

_HELD = r"""
import json, torch, deepspeed
from dstune.plan import make_plan, to_deepspeed
from dstune.profile._lora import convert_linear_layer_to_lora
from dstune.profile._models import build_causal_lm
spec = json.loads(SPEC)
out = {}
for stage in (1, 2):
    for rank in (0, 8):
        plan = make_plan("ppo", {"actor_zero_stage": stage, "dtype": "bf16", "actor_lora_dim": rank})
        config = to_deepspeed(plan, 1)["actor"]
        model = build_causal_lm(spec, config)
        if rank:
            convert_linear_layer_to_lora(model, plan.actor_lora_module_name, rank)
        trained = [p for p in model.parameters() if p.requires_grad]  # DeepSpeed-Chat's grouped params
        engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(trained), config=config)
        zero = engine.optimizer
        flats = zero.bit16_groups_flat
        spans = [(t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()) for t in flats]
        held = 0
        for name, p in engine.module.named_parameters():
            *_, linear, leaf = name.split(".")
            if linear in ("q_proj", "k_proj", "v_proj") and leaf in ("weight", "bias"):
                if any(lo <= p.data_ptr() < hi for lo, hi in spans):
                    held += p.numel()
        out[f"{stage},{rank}"] = held
print("HELD", json.dumps(out))
"""


def _facts():
    from dstune.catalog._models import spec_from_hf_config

    return model_facts(spec_from_hf_config("fused-lora-opt", SPEC))


@pytest.mark.slow
def test_fused_copy_counts_what_the_optimizers_flat_buffer_holds(tmp_path):
    """A real engine (CPU accelerator, bf16, DeepSpeed-Chat's actor config) at ZeRO 1 and 2: the q/k/v weights
    and biases whose storage lies in the optimizer's flat 16-bit buffers are what the fused copy doubles. (Stage
    0's FP16_Optimizer, which DeepSpeed picks for DeepSpeed-Chat's FusedAdam on a GPU, flattens its param groups
    the same way, fused_optimizer.py; on the CPU DeepSpeed picks the unfused one, which keeps no flat buffer.)"""
    env = {
        **os.environ,
        "DS_ACCELERATOR": "cpu",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29547",
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
    }
    script = _HELD.replace("SPEC)", repr(json.dumps(SPEC)) + ")", 1)
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    line = next((x for x in run.stdout.splitlines() if x.startswith("HELD ")), None)
    assert line is not None, run.stderr[-2000:]
    held = json.loads(line.removeprefix("HELD "))
    f = _facts()
    frozen = mem.he_fused_frozen(f, "decoder.layers.")
    for stage in (1, 2):
        for rank in (0, 8):
            ours = mem.he_fused_copy_bytes(f, np.array([stage]), np.array([True]), frozen if rank else 0.0)[0]
            assert ours == 2 * held[f"{stage},{rank}"], (stage, rank)
    assert held["2,8"] < held["2,0"]  # the frozen weights left the flat buffer; their biases stayed


def test_lora_on_other_modules_keeps_the_qkv_copy():
    f = model_facts(load_model("opt-1.3b"))
    assert mem.he_fused_frozen(f, "fc") == 0
    assert mem.he_fused_frozen(f, "decoder.layers.") == 3 * f.hidden * f.hidden * f.layers


def test_single_a6000_lora_script_holds_no_fused_weight_copy():
    """single_gpu/run_6.7b_lora.sh (ZeRO 0, HE, actor LoRA on decoder.layers.): only the q/k/v biases are fused
    copies, where a fully trained actor pays 3*h*h*L more."""
    from dstune.plan import make_plan

    values = {"enable_hybrid_engine": True, "per_device_generation_batch_size": 8, "per_device_training_batch_size": 8}
    cluster, spec, critic = make_cluster(load_gpu("A6000"), 1), load_model("opt-6.7b"), load_model("opt-350m")
    lora = estimate(make_plan("ppo", {**values, "actor_lora_dim": 128}), spec, cluster, critic_model=critic)
    full = estimate(make_plan("ppo", values), spec, cluster, critic_model=critic)
    h, layers = spec.hidden_size, spec.num_layers
    shared = mem.he_shared_buffer_bytes(model_facts(spec), np.array([True]), np.array([1]))[0]  # not a copy
    assert lora.gpu_memory["inference_weights"] - shared == pytest.approx(2 * 3 * h * layers)
    assert full.gpu_memory["inference_weights"] - shared == pytest.approx(2 * (3 * h * h + 3 * h) * layers)
