"""Does the Hybrid Engine get real inference containers for a model family on this stack?

Answered by DeepSpeed itself: a meta-device model of the family's smallest catalog
entry is handed to `DeepSpeedHybridEngine.populate_all_inference_policies`, the
method the engine runs before building containers, so every filter DeepSpeed
applies (e.g. 0.19.x skipping OPT when the layer takes `cache_position`) is
applied here too. No GPU, no weights, no hand-written table.
"""

from __future__ import annotations

import logging
import types
from dataclasses import dataclass
from typing import Any

from ..catalog import SUPPORTED_MODEL_TYPES, ModelSpec, list_models


@dataclass(frozen=True, kw_only=True)
class HeStatus:
    """The probe's answer for one model family."""

    family: str
    kernels: bool | None
    """True: DeepSpeed builds inference containers; False: generation uses generate(); None: probe failed."""
    layer_class: str | None = None
    """The decoder layer class DeepSpeed would have to match (e.g. OPTDecoderLayer)."""
    policy: str | None = None
    """DeepSpeed's policy class for that layer, when DeepSpeed has one (even if it then skips it)."""
    reason: str = ""
    probe_model: str = ""

    @property
    def consequence(self) -> str:
        """One line a user can act on."""
        name = self.family.upper() if self.family == "opt" else self.family.capitalize()
        if self.kernels is None:
            return f"{name}: HE kernel status unknown ({self.reason}); estimates assume HE kernels"
        if self.kernels:
            return f"{name}: Hybrid Engine generates with DeepSpeed inference kernels ({self.policy})"
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
        return {
            "family": self.family,
            "kernels": self.kernels,
            "layer_class": self.layer_class,
            "policy": self.policy,
            "reason": self.reason,
            "probe_model": self.probe_model,
            "consequence": self.consequence,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HeStatus:
        return cls(
            family=data["family"],
            kernels=data.get("kernels"),
            layer_class=data.get("layer_class"),
            policy=data.get("policy"),
            probe_model=data.get("probe_model") or "",
            reason=data.get("reason") or "",
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
        return HeStatus(family=family, kernels=None, reason=f"{type(error).__name__}: {error}", probe_model=spec.name)
    if entry is not None and entry[0] is marker:
        return HeStatus(
            family=family,
            kernels=True,
            layer_class=layer_cls.__name__,
            policy=entry[1].__name__,
            reason=f"DeepSpeed's {entry[1].__name__} matches {layer_cls.__name__}",
            probe_model=spec.name,
        )
    if policy is not None:
        reason = (
            f"DeepSpeed has {policy} for {layer_cls.__name__} but its Hybrid Engine does not "
            "use it on this stack (0.19.x drops it when the layer's forward takes cache_position)"
        )
    else:
        reason = f"no DeepSpeed inference policy matches {layer_cls.__name__}"
    return HeStatus(
        family=family,
        kernels=False,
        layer_class=layer_cls.__name__,
        policy=policy,
        reason=reason,
        probe_model=spec.name,
    )


def probe_all() -> dict[str, HeStatus]:
    """Every catalog family, in the catalog's order."""
    return {family: probe_family(family) for family in SUPPORTED_MODEL_TYPES}


def main() -> None:
    """`python -m dstune.doctor._he`: print the probe as JSON (run in a subprocess by the cache)."""
    import json
    import sys

    json.dump({family: status.to_json() for family, status in probe_all().items()}, sys.stdout)


if __name__ == "__main__":
    main()
