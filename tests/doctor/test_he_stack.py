"""The HE-kernel path on a stack that has it (constraints/he.txt: transformers 4.48.3, DeepSpeed 0.19.8).

`.ci/run` builds that stack in .venv-he and runs this file there, so CI proves that with constraints/he.txt
the doctor says kernels for OPT and LLaMA. By hand:
    python3 -m venv .venv-he && .venv-he/bin/pip install torch==2.13.0 \\
        && .venv-he/bin/pip install -c constraints/he.txt -e '.[test]'
    DS_ACCELERATOR=cpu .venv-he/bin/python -m pytest tests/doctor/test_he_stack.py -q
The verdict test is skipped on other stacks; the container tests where DeepSpeed drops OPT's policy.
"""

from __future__ import annotations

from importlib import metadata

import pytest

from dstune.catalog import load_model


def _opt_layer_takes_cache_position() -> bool:
    """What DeepSpeed 0.19.x checks before it keeps its OPT policy (transformers 4.49 to 5.23 add it)."""
    import inspect

    from transformers.models.opt.modeling_opt import OPTDecoderLayer

    return "cache_position" in inspect.signature(OPTDecoderLayer.forward).parameters


def _pinned_transformers() -> str:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "constraints" / "he.txt").read_text(encoding="utf-8")
    return next(line.split("==")[1].strip() for line in text.splitlines() if line.startswith("transformers=="))


needs_opt_policy = pytest.mark.skipif(
    _opt_layer_takes_cache_position(),
    reason=f"OPTDecoderLayer.forward takes cache_position in transformers {metadata.version('transformers')}, "
    "so DeepSpeed drops its OPT policy (constraints/he.txt pins a stack that keeps it)",
)
on_he_stack = pytest.mark.skipif(
    metadata.version("transformers") != _pinned_transformers(),
    reason=f"transformers {metadata.version('transformers')} is not constraints/he.txt's "
    f"{_pinned_transformers()} (.ci/run runs this in .venv-he)",
)


def _tiny_opt():
    import torch
    from transformers import AutoModelForCausalLM

    spec = load_model("tiny-opt")
    torch.manual_seed(0)
    return spec, AutoModelForCausalLM.from_config(spec.hf_config_object())


@on_he_stack
def test_doctor_says_kernels_for_opt_and_llama() -> None:
    """Policy found and calling convention holds: the verdict is kernels (the real HE step needs CUDA)."""
    import torch

    from dstune.doctor._he import probe_family

    opt, llama = probe_family("opt"), probe_family("llama")
    assert opt.verdict == "kernels" and opt.policy == "HFOPTLayerPolicy", (opt.reason, opt.contract)
    assert llama.verdict == "kernels" and llama.policy == "LLAMALayerPolicy", (llama.reason, llama.contract)
    assert opt.contract_holds is True and "equals the model's own" in opt.contract
    if not torch.cuda.is_available():
        assert opt.cuda_step_ok is None and "no CUDA here" in opt.cuda_step
    else:
        assert opt.cuda_step_ok is True, opt.cuda_step
    assert probe_family("qwen2").verdict == "no kernels"


@on_he_stack
def test_recorded_he_verdicts_match_the_probe() -> None:
    """catalog/data/stacks.json's verdicts for `he` are what the doctor probes on that stack, family by family:
    a search targeting `he` from any machine plans with what CI proves here."""
    from dstune.catalog import SUPPORTED_MODEL_TYPES, named_stack
    from dstune.doctor._he import probe_family

    recorded = named_stack("he")
    assert metadata.version("deepspeed") == recorded.version("deepspeed")
    assert metadata.version("transformers") == recorded.version("transformers")
    probed = {family: probe_family(family).verdict for family in SUPPORTED_MODEL_TYPES}
    assert probed == {family: recorded.he_verdict(family) for family in SUPPORTED_MODEL_TYPES}


@needs_opt_policy
def test_doctor_finds_opt_and_llama_policies() -> None:
    from dstune.doctor._he import probe_family

    opt, llama = probe_family("opt"), probe_family("llama")
    assert opt.policy_found is True and opt.policy == "HFOPTLayerPolicy", opt.reason
    assert llama.policy_found is True and llama.policy == "LLAMALayerPolicy", llama.reason


@needs_opt_policy
def test_deepspeeds_opt_policy_reads_the_layer_the_hybrid_engine_fuses() -> None:
    """What new_inference_container hands the kernels: fused qkv, MLP and norms of the real layer."""
    import torch
    from deepspeed.module_inject.containers.opt import HFOPTLayerPolicy

    spec, model = _tiny_opt()
    layer = model.model.decoder.layers[0]
    policy = HFOPTLayerPolicy(layer, inference=True)
    hidden, heads, _, _ = policy.get_hidden_heads()
    assert (hidden, heads) == (spec.hidden_size, spec.num_heads)
    qkvw, qkvb, out_w, _ = policy.attention()
    assert qkvw.shape == (3 * spec.hidden_size, spec.hidden_size) and qkvb.shape == (3 * spec.hidden_size,)
    assert (
        torch.equal(qkvw[: spec.hidden_size], layer.self_attn.q_proj.weight)
        and out_w is layer.self_attn.out_proj.weight
    )
    fc1_w, _, fc2_w, _ = policy.mlp()
    assert fc1_w.shape == (spec.ffn_size, spec.hidden_size) and fc2_w.shape == (spec.hidden_size, spec.ffn_size)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@needs_opt_policy
def test_hybrid_engine_builds_opt_containers_up_to_the_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the CPU accelerator the engine takes the container path for OPT and stops only where the
    inference kernels start (DeepSpeed has no CPU build of them); on CUDA it builds them."""
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    for name, value in {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }.items():
        monkeypatch.setenv(name, value)
    _, model = _tiny_opt()
    config = {
        "train_micro_batch_size_per_gpu": 1,
        "zero_optimization": {"stage": 0},
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-5, "torch_adam": True}},
        "hybrid_engine": {"enabled": True, "max_out_tokens": 16},
    }
    if get_accelerator().device_name() == "cuda":
        engine, *_ = deepspeed.initialize(model=model, config=config)
        assert len(engine._inference_containers) == load_model("tiny-opt").num_layers
        return
    with pytest.raises(ValueError, match="not been implemented on CPU backend"):
        deepspeed.initialize(model=model, config=config)
