"""Issue 30 item 2: what a no-grad forward without use_cache=False hands back and DeepSpeed-Chat keeps (PPO's
actor and reference outputs through the reward and critic forwards, DPO's ref_outputs through backward and
step), measured on real transformers models built from configs, against the cost model's terms."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.catalog._models import spec_from_hf_config
from dstune.costmodel import _memory as mem
from dstune.costmodel import estimate, model_facts
from dstune.costmodel._stack import forward_returns_cache, installed_transformers
from dstune.plan import make_plan

SHAPES = {
    "opt": {"model_type": "opt", "ffn_dim": 256, "word_embed_proj_dim": 64, "do_layer_norm_before": True},
    "llama": {"model_type": "llama", "num_key_value_heads": 2, "intermediate_size": 96},
}
COMMON = {"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 3, "vocab_size": 128}
BATCH, SEQ = 3, 10

_PROBE = r"""
import json, sys, torch, transformers
from transformers import AutoConfig, AutoModelForCausalLM
out = {"version": transformers.__version__}
for family, values in json.loads(sys.argv[1]).items():
    config = AutoConfig.for_model(**values)
    model = AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    for mode in ("eval", "train_ckpt"):
        if mode == "train_ckpt":
            model.gradient_checkpointing_enable()
            model.train()
        else:
            model.eval()
        with torch.no_grad():
            output = model(torch.randint(0, 128, (BATCH, SEQ)))
        cache = output.past_key_values
        tensors = []
        if cache is not None:
            layers = getattr(cache, "layers", None)
            pairs = [(x.keys, x.values) for x in layers] if layers is not None else list(cache)
            tensors = [t for pair in pairs for t in pair]
        out[f"{family}/{mode}"] = {
            "cache_bytes": sum(t.numel() * t.element_size() for t in tensors) if cache is not None else None,
            "logits_bytes": output.logits.numel() * output.logits.element_size(),
        }
print("OUTPUTS", json.dumps(out))
""".replace("BATCH", str(BATCH)).replace("SEQ", str(SEQ))


def _probe(python: str) -> dict:
    configs = {f: {**COMMON, "max_position_embeddings": 64, **SHAPES[f]} for f in SHAPES}
    run = subprocess.run([python, "-c", _PROBE, json.dumps(configs)], capture_output=True, text=True, timeout=600)
    line = next((x for x in run.stdout.splitlines() if x.startswith("OUTPUTS ")), None)
    assert line is not None, run.stderr[-2000:]
    return json.loads(line.removeprefix("OUTPUTS "))


def _check(seen: dict) -> None:
    for family in SHAPES:
        f = model_facts(
            spec_from_hf_config(f"kv-{family}", {**COMMON, "max_position_embeddings": 64, **SHAPES[family]})
        )
        cache = mem.kv_cache_bytes(f, np.array([BATCH]), np.array([SEQ]))[0]
        for mode, checkpointed_training in (("eval", False), ("train_ckpt", True)):
            got = seen[f"{family}/{mode}"]
            assert got["logits_bytes"] == 2 * BATCH * SEQ * f.vocab
            returned = bool(forward_returns_cache(seen["version"], checkpointed_training))
            assert (got["cache_bytes"] is not None) == returned, (seen["version"], family, mode)
            if returned:
                assert got["cache_bytes"] == cache


def test_installed_forwards_return_what_the_terms_count():
    seen = _probe(sys.executable)
    assert seen["version"] == installed_transformers()
    _check(seen)


def test_transformers_4_forwards_drop_the_cache_only_when_training_checkpointed():
    """The Hybrid Engine stack (.venv-he: transformers 4.48.3), where one is built."""
    python = Path(__file__).resolve().parents[2] / ".venv-he" / "bin" / "python"
    if not python.exists():
        pytest.skip("no .venv-he here")
    seen = _probe(str(python))
    assert seen["version"].startswith("4.")
    _check(seen)


def test_opt67_ppo_without_he_peaks_in_experience_with_both_caches():
    """OPT-6.7B, ZeRO-2, actor gradient checkpointing, generation batch 32, training batch 4, no HE, 8 GPUs: both
    16-bit logits and (on transformers 5) both full-sequence caches are held through the reward and critic
    forwards, so the peak is the experience phase (it read as generation before)."""
    plan = make_plan(
        "ppo",
        {
            "actor_zero_stage": 2,
            "critic_zero_stage": 2,
            "actor_gradient_checkpointing": True,
            "per_device_generation_batch_size": 32,
            "per_device_training_batch_size": 4,
            "enable_hybrid_engine": False,
        },
    )
    opt67, cluster = load_model("opt-6.7b"), make_cluster(load_gpu("A100-80G"), 8)
    f = model_facts(opt67)
    one_cache = mem.kv_cache_bytes(f, np.array([32.0]), np.array([512.0]))[0]
    five = estimate(plan, opt67, cluster, critic_model=load_model("opt-350m"), transformers_version="5.25.0")
    four = estimate(plan, opt67, cluster, critic_model=load_model("opt-350m"), transformers_version="4.48.3")
    assert five.peak_phase == four.peak_phase == "experience"
    assert five.gpu_memory["kv_cache"] == 2 * one_cache and four.gpu_memory["kv_cache"] == one_cache
    assert five.gpu_memory["activations"] >= 2 * 2 * 32 * 512 * f.vocab  # both 16-bit logits


def test_dpo_reference_outputs_live_through_backward_and_step():
    """OPT-1.3B DPO at default settings: the reference's logits and cache (about 4.5 GiB) are in the peak."""
    opt13 = load_model("opt-1.3b")
    plan = make_plan("dpo", {})
    e = estimate(plan, opt13, make_cluster(load_gpu("A100-80G"), 8))
    sequences, seq = 2.0 * plan.per_device_train_batch_size, float(plan.max_seq_len)
    f = model_facts(opt13)
    kept = 2 * sequences * seq * f.vocab + mem.kv_cache_bytes(f, np.array([sequences]), np.array([seq]))[0]
    assert kept / 2**30 == pytest.approx(4.5, abs=0.1)
    assert e.gpu_memory["kv_cache"] == mem.kv_cache_bytes(f, np.array([sequences]), np.array([seq]))[0]


def test_every_rank_loads_the_whole_critic_checkpoint_at_start_up():
    """Item 6: create_critic_model torch.loads the 16-bit step-2 checkpoint on every rank, at any ZeRO stage:
    a LLaMA-2-7B critic on 8 ranks of one node holds 8 x 2 bytes x its parameters on the host at once."""
    llama = load_model("llama-2-7b")
    plan = make_plan("ppo", {"actor_zero_stage": 3, "critic_zero_stage": 3})
    e = estimate(plan, llama, make_cluster(load_gpu("A100-80G"), 8), critic_model=llama)
    checkpoints = 8 * 2.0 * model_facts(llama, "value").params
    assert e.host_peak_bytes >= checkpoints > 100e9
