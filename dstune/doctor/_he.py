"""What the Hybrid Engine does for a model family on this stack: kernels, no kernels, or broken.

Three questions, each answered by running code. (1) Does DeepSpeed find an inference policy? A
meta-device model of the family's smallest catalog entry goes through
`DeepSpeedHybridEngine.populate_all_inference_policies`, so every filter DeepSpeed applies is applied
here too. (2) If it does, does the model's decoder loop speak the injected layer's calling convention?
A stand-in with that convention runs a tiny real model's generate() on the CPU (`_contract`). (3) Where
CUDA is present, one real Hybrid Engine generate step of a tiny model.
"""

from __future__ import annotations

import contextlib
import logging
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from ..catalog import SUPPORTED_MODEL_TYPES, ModelSpec, list_models
from ._contract import Contract, check_contract

Verdict = Literal["kernels", "no kernels", "broken"]
VERDICTS: tuple[Verdict, ...] = ("kernels", "no kernels", "broken")
NO_CUDA_STEP = (
    "real HE generate step not run: no CUDA here (DeepSpeed has no CPU build of the inference kernels, "
    "so CPU profile trials run without the Hybrid Engine); the verdict is for GPUs with this stack"
)


@dataclass(frozen=True, kw_only=True)
class HeStatus:
    """The probe's answer for one model family."""

    family: str
    policy_found: bool | None
    """True: DeepSpeed finds an inference policy and builds its containers (the verdict then says whether
    generation runs with them or crashes); False: generation uses generate(); None: probe failed."""
    layer_class: str | None = None
    """The decoder layer class DeepSpeed would have to match (e.g. OPTDecoderLayer)."""
    policy: str | None = None
    """DeepSpeed's policy class for that layer, when DeepSpeed has one (even if it then skips it)."""
    reason: str = ""
    probe_model: str = ""
    contract: str = ""
    """What the stand-in run showed (question 2); empty when there is no policy to check."""
    contract_holds: bool | None = None
    unread: tuple[str, ...] = ()
    """Decoder-loop arguments carrying the KV cache that the injected layer never reads."""
    cuda_step: str = ""
    """The real HE generate step's outcome, or why it did not run (question 3)."""
    cuda_step_ok: bool | None = None

    @property
    def verdict(self) -> Verdict | None:
        """kernels, no kernels (generate() fallback), broken (HE generation crashes); None when unknown."""
        if self.policy_found is None:
            return None
        if not self.policy_found:
            return "no kernels"
        return "broken" if self.contract_holds is False or self.cuda_step_ok is False else "kernels"

    @property
    def consequence(self) -> str:
        """One line a user can act on."""
        name = self.family.upper() if self.family == "opt" else self.family.capitalize()
        if self.policy_found is None:
            return f"{name}: HE kernel status unknown ({self.reason}); estimates assume HE kernels"
        if self.verdict == "broken":
            failed = self.cuda_step if self.cuda_step_ok is False else self.contract
            unread = (
                f"; the loop passes its KV cache as {', '.join(self.unread)}=, which it never reads"
                if self.unread
                else ""
            )
            return (
                f"{name}: Hybrid Engine generation crashes on this stack: DeepSpeed's {self.policy} injects its "
                f"layer, and the decoder loop does not speak its convention ({failed}{unread}); "
                "enable_hybrid_engine=true is not handed out; pip install -c constraints/he.txt "
                "(transformers 4.48.3) for HE kernels"
            )
        if self.policy_found:
            return (
                f"{name}: Hybrid Engine generates with DeepSpeed inference kernels ({self.policy}; calling "
                f"convention checked with a stand-in on the CPU; {self.cuda_step or 'real HE step not run'})"
            )
        if self.policy:
            return (
                f"{name}: no HE kernels on this stack; DeepSpeed skips {self.policy} and generation uses "
                f"the model's generate(); pin transformers per constraints/he.txt for HE kernels"
            )
        return (
            f"{name}: DeepSpeed has no inference policy for {self.layer_class}; "
            "Hybrid Engine generation uses the model's generate()"
        )

    def to_json(self) -> dict[str, Any]:
        """No field is named `kernels`: whether the kernels run is the verdict's to say, not the policy lookup's."""
        return {
            "family": self.family,
            "policy_found": self.policy_found,
            "layer_class": self.layer_class,
            "policy": self.policy,
            "reason": self.reason,
            "probe_model": self.probe_model,
            "verdict": self.verdict,
            "contract": self.contract,
            "contract_holds": self.contract_holds,
            "unread": list(self.unread),
            "cuda_step": self.cuda_step,
            "cuda_step_ok": self.cuda_step_ok,
            "consequence": self.consequence,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HeStatus:
        return cls(
            family=data["family"],
            policy_found=data.get("policy_found", data.get("kernels")),  # "kernels": caches before the rename
            layer_class=data.get("layer_class"),
            policy=data.get("policy"),
            probe_model=data.get("probe_model") or "",
            reason=data.get("reason") or "",
            contract=data.get("contract") or "",
            contract_holds=data.get("contract_holds"),
            unread=tuple(data.get("unread") or ()),
            cuda_step=data.get("cuda_step") or "",
            cuda_step_ok=data.get("cuda_step_ok"),
        )


def probe_model_for(family: str) -> ModelSpec:
    """The family's smallest catalog model: building it on the meta device costs nothing."""
    specs = [s for s in list_models() if s.family == family]
    if not specs:
        raise ValueError(f"no catalog model of family {family!r}")
    return min(specs, key=lambda s: s.num_params)


def _decoder_layer(model: Any, num_layers: int) -> Any:
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers:
            return module[0]
    raise RuntimeError(f"no ModuleList of {num_layers} layers in {type(model).__name__}")


def _all_policies() -> dict[type, str]:
    """Every layer class DeepSpeed has a transformer policy for, before its own filters."""
    from deepspeed.module_inject.replace_policy import replace_policies

    found: dict[type, str] = {}
    for policy in replace_policies:
        policy(None)  # DeepSpeed's policies set _orig_layer_class in __init__
        classes = policy._orig_layer_class
        for cls in classes if isinstance(classes, list) else [classes]:
            if cls is not None:
                found[cls] = policy.__name__
    return found


def probe_family(family: str) -> HeStatus:
    """Ask DeepSpeed's policy lookup about one family (imports torch, transformers, deepspeed)."""
    spec = probe_model_for(family)
    try:
        import torch
        from deepspeed.runtime.hybrid_engine import DeepSpeedHybridEngine
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(spec.hf_config_object())
        layer_cls = type(_decoder_layer(model, spec.num_layers))
        marker = object()
        stand_in = types.SimpleNamespace(module=model, new_inference_container=marker)
        ds_logger = logging.getLogger("DeepSpeed")
        level = ds_logger.level
        ds_logger.setLevel(logging.ERROR)  # its "no compatible policy" warning is our finding, said once
        try:
            DeepSpeedHybridEngine.populate_all_inference_policies(stand_in)
        finally:
            ds_logger.setLevel(level)
        entry = stand_in.inference_policies.get(layer_cls)
        policy = _all_policies().get(layer_cls)
    except Exception as error:  # noqa: BLE001 - any failure is reported, never fatal
        return HeStatus(
            family=family, policy_found=None, reason=f"{type(error).__name__}: {error}", probe_model=spec.name
        )
    if entry is not None and entry[0] is marker:
        found = HeStatus(
            family=family,
            policy_found=True,
            layer_class=layer_cls.__name__,
            policy=entry[1].__name__,
            reason=f"DeepSpeed's {entry[1].__name__} matches {layer_cls.__name__}",
            probe_model=spec.name,
        )
        return _run_checks(found, spec, entry[1])
    if policy is not None:
        reason = (
            f"DeepSpeed has {policy} for {layer_cls.__name__} but its Hybrid Engine does not "
            "use it on this stack (0.19.x drops it when the layer's forward takes cache_position or past_key_values)"
        )
    else:
        reason = f"no DeepSpeed inference policy matches {layer_cls.__name__}"
    return HeStatus(
        family=family,
        policy_found=False,
        layer_class=layer_cls.__name__,
        policy=policy,
        reason=reason,
        probe_model=spec.name,
    )


def _run_checks(found: HeStatus, spec: ModelSpec, policy_cls: type) -> HeStatus:
    """Questions 2 and 3 for a family DeepSpeed has a policy for."""
    import dataclasses

    try:
        contract = contract_for(spec, policy_cls)
    except Exception as error:  # noqa: BLE001 - the stand-in could not even be built: unknown, said so
        return dataclasses.replace(
            found, policy_found=None, reason=f"contract check failed: {type(error).__name__}: {error}"
        )
    found = dataclasses.replace(
        found, contract=contract.evidence, contract_holds=contract.holds, unread=contract.unread
    )
    if not contract.holds:
        return dataclasses.replace(found, cuda_step="not run: the calling convention already fails")
    ok, text = cuda_generate_step(spec)
    return dataclasses.replace(found, cuda_step=text, cuda_step_ok=ok)


def contract_for(spec: ModelSpec, policy_cls: type) -> Contract:
    """The calling-convention check on a real model of the family (random weights, CPU, float32)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(small_config(spec)).to(torch.float32)
    layer_cls = type(_decoder_layer(model, int(model.config.num_hidden_layers)))
    return check_contract(model, [m for m in model.modules() if type(m) is layer_cls], policy_cls)


def small_config(spec: ModelSpec) -> Any:
    """The family's probe config, narrowed to 2 layers when the catalog's smallest is not tiny."""
    config = spec.hf_config_object()
    if spec.num_params > 100e6:
        config.num_hidden_layers, config.hidden_size, config.intermediate_size = 2, 64, 128
        config.num_attention_heads, config.num_key_value_heads, config.vocab_size = 4, 4, 128
        config.head_dim = 16
    return config


def cuda_generate_step(spec: ModelSpec) -> tuple[bool | None, str]:
    """(ran?, what happened): one real Hybrid Engine generate of a tiny model; (None, why) without CUDA."""
    import os

    import torch

    if not torch.cuda.is_available():
        return None, NO_CUDA_STEP
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() != "cuda":
        return None, f"real HE generate step not run: DeepSpeed's accelerator is {get_accelerator().device_name()}"
    try:
        import deepspeed
        from transformers import AutoModelForCausalLM

        for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}.items():
            os.environ.setdefault(name, value)
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29517")
        config = small_config(spec)
        config.num_key_value_heads = config.num_attention_heads  # the family's plain path; GQA is a known issue
        model = AutoModelForCausalLM.from_config(config)
        ds_config = {
            "train_micro_batch_size_per_gpu": 1,
            "fp16": {"enabled": True},
            "zero_optimization": {"stage": 0},
            "optimizer": {"type": "AdamW", "params": {"lr": 1e-5, "torch_adam": True}},
            "hybrid_engine": {"enabled": True, "max_out_tokens": 16},
        }
        engine, *_ = deepspeed.initialize(model=model, config=ds_config)
        containers = len(engine._inference_containers)
        engine.eval()
        prompt = torch.randint(3, config.vocab_size, (2, 5), device=engine.device)
        out = engine.module.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=3, do_sample=False, pad_token_id=0
        )
        engine.train()
    except Exception as error:  # noqa: BLE001 - the failure is the finding
        return False, f"real HE generate step failed on {torch.cuda.get_device_name()}: {type(error).__name__}: {error}"
    return True, (
        f"real HE generate step ran on {torch.cuda.get_device_name()} ({containers} inference containers, "
        f"{out.shape[1] - prompt.shape[1]} new tokens)"
    )


def probe_all() -> dict[str, HeStatus]:
    """Every catalog family, in the catalog's order."""
    return {family: probe_family(family) for family in SUPPORTED_MODEL_TYPES}


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Point file descriptor 1 itself at stderr while the probe runs, so a C printf (DeepSpeed's
    inference workspace prints a banner on its first allocation) cannot spoil the JSON on stdout;
    C stdio's buffer is flushed before fd 1 is given back, so nothing written meanwhile lands later."""
    import ctypes
    import os
    import sys

    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


def main() -> None:
    """`python -m dstune.doctor._he`: print the probe as JSON (run in a subprocess by the cache)."""
    import json
    import sys

    with stdout_to_stderr():  # libraries' prints, Python's or C's, must not corrupt the JSON
        found = probe_all()
    json.dump({family: status.to_json() for family, status in found.items()}, sys.stdout)


if __name__ == "__main__":
    main()
