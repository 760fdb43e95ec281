"""The Hybrid Engine's calling convention, checked with a stand-in in real tiny models on the installed stack.

The stand-in takes DeepSpeed's own signature and return config; these tests check that it does, that its
verdict on this stack is the one recorded in known_issues.yaml for it, and that the tuple the injected layer
returns is what decides it (the same model with return_tuple off gives the opposite answer).
"""

from __future__ import annotations

import inspect
from importlib import metadata

import pytest
import torch

from dstune.catalog import load_model
from dstune.doctor import known_issues
from dstune.doctor._contract import (
    InjectedLayerStandIn,
    check_contract,
    container_return_convention,
    injected_layer_convention,
)

FAMILIES = {"opt": "tiny-opt", "llama": "tiny-llama"}


def _policy(family: str) -> type:
    from deepspeed.module_inject.containers.llama import LLAMALayerPolicy
    from deepspeed.module_inject.containers.opt import HFOPTLayerPolicy

    return {"opt": HFOPTLayerPolicy, "llama": LLAMALayerPolicy}[family]


def _model(family: str):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(load_model(FAMILIES[family]).hf_config_object()).to(torch.float32)
    layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
    return model, layers


def _recorded() -> dict[str, str] | None:
    """The verdicts known_issues.yaml records for the installed DeepSpeed and transformers, if any."""
    issue = next(i for i in known_issues() if i.id == "he_broken_stack")
    for seen in issue.observed:
        stack = seen["stack"]
        if (stack["deepspeed"], stack["transformers"]) == (
            metadata.version("deepspeed"),
            metadata.version("transformers"),
        ):
            return dict(seen["verdicts"])
    return None


def test_stand_in_takes_deepspeeds_signature_and_return_config() -> None:
    from deepspeed.inference.config import DeepSpeedInferenceConfig
    from deepspeed.model_implementations.transformers.ds_transformer import DeepSpeedTransformerInference

    signature, reads = injected_layer_convention()
    ds = list(inspect.signature(DeepSpeedTransformerInference.forward).parameters)
    assert list(signature.parameters) == ds[1:]
    assert {"position_ids", "hidden_states"} <= reads and "cache" not in reads
    model, layers = _model("opt")
    returns = container_return_convention(model, layers[0], _policy("opt"))
    assert returns == (DeepSpeedInferenceConfig().return_tuple, False) == (True, False)
    stand_in = InjectedLayerStandIn(layers[0], signature, reads, returns)
    with pytest.raises(Exception, match="cannot take the loop's arguments"):
        stand_in(torch.zeros(1, 2, 128), torch.zeros(1), *([None] * 17))  # more positionals than DeepSpeed has


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_verdict_on_this_stack_is_the_recorded_one(family: str) -> None:
    recorded = _recorded()
    if recorded is None:
        pytest.skip(f"no verdict recorded for transformers {metadata.version('transformers')}")
    model, layers = _model(family)
    contract = check_contract(model, layers, _policy(family))
    assert contract.holds is (recorded[family] == "kernels"), contract.evidence
    if not contract.holds:
        assert "returned tuple on as hidden states" in contract.evidence and "return_tuple=True" in contract.evidence
        assert contract.unread == ("cache",)  # the loop's KV cache goes where DeepSpeed's layer never looks


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_returned_tuple_decides(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: without a KV cache (so the layer returns its output alone unless return_tuple), return_tuple
    off gives the opposite answer on the same loop: the check sees the tuple, not some other failure."""
    from dstune.doctor import _contract

    model, layers = _model(family)
    with_tuple = check_contract(model, layers, _policy(family), use_cache=False)
    monkeypatch.setattr(_contract, "container_return_convention", lambda *_: (False, False))
    model, layers = _model(family)
    without = check_contract(model, layers, _policy(family), use_cache=False)
    assert without.holds is not with_tuple.holds, (with_tuple.evidence, without.evidence)


def test_doctor_json_carries_the_verdict(cache_dir) -> None:
    from dstune.doctor import run_doctor

    report = run_doctor().to_json()
    recorded = _recorded()
    for family, status in report["hybrid_engine"].items():
        assert status["verdict"] in ("kernels", "no kernels", "broken")
        if recorded:
            assert status["verdict"] == recorded[family], status
        if status["verdict"] == "broken":
            assert "constraints/he.txt" in status["consequence"] and status["contract_holds"] is False
        if status["verdict"] == "kernels" and not torch.cuda.is_available():
            assert "no CUDA here" in status["cuda_step"] and status["cuda_step_ok"] is None
    assert any(f["topic"].startswith("HE opt: ") for f in report["findings"])
