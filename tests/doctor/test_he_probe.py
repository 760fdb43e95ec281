"""The HE status per family is DeepSpeed's own answer, and is cached per installed stack."""

from __future__ import annotations

import json
import types
from importlib import metadata

import pytest

from dstune.catalog import SUPPORTED_MODEL_TYPES
from dstune.doctor import _cache, he_kernels_for, he_statuses, stack_key
from dstune.doctor._he import probe_all, probe_model_for


@pytest.fixture(scope="module")
def probed():
    return probe_all()


def _deepspeed_makes_containers(family: str) -> bool:
    """A real (CPU, random weights) tiny model of the family through the Hybrid Engine's policy table:
    does the decoder layer map to DeepSpeed's container factory, as create_inference_containers needs?"""
    import torch
    from deepspeed.runtime.hybrid_engine import DeepSpeedHybridEngine
    from transformers import AutoModelForCausalLM

    spec = probe_model_for(family)
    config = spec.hf_config_object()
    if spec.num_params > 100e6:  # build a 2-layer, narrow model of the same architecture
        config.num_hidden_layers, config.hidden_size, config.intermediate_size = 2, 64, 128
        config.num_attention_heads, config.num_key_value_heads, config.vocab_size = 4, 2, 128
        config.head_dim = 16
    model = AutoModelForCausalLM.from_config(config).to(torch.float32)
    engine = types.SimpleNamespace(module=model, new_inference_container="factory")
    DeepSpeedHybridEngine.populate_all_inference_policies(engine)
    return any(engine.inference_policies.get(type(m), (None,))[0] == "factory" for m in model.modules())


@pytest.mark.parametrize("family", SUPPORTED_MODEL_TYPES)
def test_status_agrees_with_deepspeeds_policy_lookup(family: str, probed) -> None:
    status = probed[family]
    assert status.policy_found is not None, status.reason
    assert status.policy_found == _deepspeed_makes_containers(family)
    assert status.layer_class and status.layer_class.endswith("DecoderLayer")
    assert status.consequence.lower().startswith(family[:3].lower())


def test_policy_named_is_deepspeeds_policy_for_that_layer(probed) -> None:
    from deepspeed.module_inject.replace_policy import replace_policies

    names = {p.__name__ for p in replace_policies}
    for status in probed.values():
        assert status.policy is None or status.policy in names
        if status.policy_found:
            assert status.policy is not None


def test_installed_stack_facts(probed) -> None:
    """Seen on this project's machines: DeepSpeed 0.19.x drops OPT's policy when OPTDecoderLayer.forward
    takes cache_position (transformers 4.49 to 5.23; 4.48 and 5.24 do not), keeps LLaMA's, and has none
    for Qwen2 or Mistral."""
    import inspect

    from transformers.models.opt.modeling_opt import OPTDecoderLayer

    if not metadata.version("deepspeed").startswith("0.19."):
        pytest.skip("facts recorded for DeepSpeed 0.19.x")
    takes_cache_position = "cache_position" in inspect.signature(OPTDecoderLayer.forward).parameters
    assert probed["opt"].policy_found is not takes_cache_position
    assert probed["opt"].policy == "HFOPTLayerPolicy"
    assert probed["llama"].policy_found is True
    assert probed["qwen2"].policy_found is False and probed["qwen2"].policy is None
    assert probed["mistral"].policy_found is False


def test_cache_is_keyed_by_versions_and_skips_the_probe(cache_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    fake = {f: _cache.HeStatus(family=f, policy_found=f == "llama", reason="fake") for f in SUPPORTED_MODEL_TYPES}
    monkeypatch.setattr(_cache, "_probe_in_subprocess", lambda: calls.append(1) or dict(fake))
    assert he_kernels_for("opt") == (False, "fake") and he_kernels_for("llama")[0] is True
    assert len(calls) == 1
    stored = json.loads((cache_dir / _cache.CACHE_FILE).read_text())
    assert list(stored) == [stack_key()] and "deepspeed=" in stack_key() and "transformers=" in stack_key()
    he_statuses.cache_clear()
    assert he_kernels_for("opt") == (False, "fake") and len(calls) == 1  # from disk
    monkeypatch.setattr(_cache, "stack_key", lambda: "v1 deepspeed=9.9 transformers=9.9 torch=9.9")
    he_statuses.cache_clear()
    he_kernels_for("opt")
    assert len(calls) == 2  # another stack: probed again


def test_failed_probe_assumes_kernels_and_says_why(cache_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken():
        raise RuntimeError("HE probe exited 1: ImportError: deepspeed")

    monkeypatch.setattr(_cache, "_probe_in_subprocess", broken)
    kernels, reason = he_kernels_for("opt")
    assert kernels is True and "probe failed" in reason and "deepspeed" in reason
    assert not (cache_dir / _cache.CACHE_FILE).exists()  # a failure is not remembered


def test_subprocess_probe_matches_in_process(cache_dir, probed) -> None:
    statuses = dict(he_statuses())
    assert {f: s.policy_found for f, s in statuses.items()} == {f: s.policy_found for f, s in probed.items()}


def test_cache_written_without_a_kernels_field_and_old_caches_still_read(cache_dir, monkeypatch) -> None:
    """Issue 25: a field named `kernels` that is true beside the verdict "broken" tells a script the opposite of
    the verdict. The cache (what `doctor --json` and trials copy) says `policy_found`; a cache file written
    before the rename, with `kernels`, still reads."""
    broken = _cache.HeStatus(family="opt", policy_found=True, contract_holds=False, reason="r", contract="c")
    fake = {f: broken if f == "opt" else _cache.HeStatus(family=f, policy_found=False) for f in SUPPORTED_MODEL_TYPES}
    monkeypatch.setattr(_cache, "_probe_in_subprocess", lambda: dict(fake))
    he_statuses.cache_clear()
    assert dict(he_statuses())["opt"].verdict == "broken"
    stored = json.loads((cache_dir / _cache.CACHE_FILE).read_text())[stack_key()]
    assert all("kernels" not in item for item in stored.values())
    assert stored["opt"]["policy_found"] is True and stored["opt"]["verdict"] == "broken"
    old = {**stored["opt"], "kernels": stored["opt"].pop("policy_found")}
    again = _cache.HeStatus.from_json(old)
    assert again.policy_found is True and again.verdict == "broken"
