"""The HE-kernel path on a stack that has it (constraints/he.txt: transformers 4.48.3, DeepSpeed 0.19.8).

Skipped where the installed transformers gives OPT's decoder layer `cache_position` (4.49 to 5.23). Run it with
    python3 -m venv /tmp/he && /tmp/he/bin/pip install torch==2.13.0 -c constraints/he.txt \\
        transformers deepspeed accelerate numpy pyyaml psutil rich nvidia-ml-py pytest pytest-timeout
    PYTHONPATH=. /tmp/he/bin/python -m pytest tests/doctor/test_he_stack.py -q
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


pytestmark = pytest.mark.skipif(
    _opt_layer_takes_cache_position(),
    reason=f"OPTDecoderLayer.forward takes cache_position in transformers {metadata.version('transformers')}, "
    "so DeepSpeed drops its OPT policy (constraints/he.txt pins a stack that keeps it)",
)


def _tiny_opt():
    import torch
    from transformers import AutoModelForCausalLM

    spec = load_model("tiny-opt")
    torch.manual_seed(0)
    return spec, AutoModelForCausalLM.from_config(spec.hf_config_object())


def test_doctor_says_opt_and_llama_get_kernels() -> None:
    from dstune.doctor._he import probe_family

    opt, llama = probe_family("opt"), probe_family("llama")
    assert opt.kernels is True and opt.policy == "HFOPTLayerPolicy", opt.reason
    assert llama.kernels is True and llama.policy == "LLAMALayerPolicy", llama.reason


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
