"""Does the model's decoder loop speak the calling convention of DeepSpeed's injected inference layer?

When the Hybrid Engine has containers for a family, `eval()` sets each decoder layer's `forward` to
`DeepSpeedTransformerInference.forward`, whose kernels need CUDA. The convention around those kernels
does not: which arguments the layer reads (its signature, plus the names its attention takes out of
`**kwargs`), that it keeps its own key/value past (`layer_past`, `past_key_value`, else its last
presents), and that it returns a tuple when its config's `return_tuple` is true (the Hybrid Engine
builds containers with a default `DeepSpeedInferenceConfig`, where it is). A stand-in with exactly
that convention, doing the math with the real Hugging Face layer, is swapped in the same way into a
tiny real model (random weights); its greedy generation must then equal the plain model's.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any

_CACHE_KWARGS = ("past_key_value", "past_key_values", "cache")
"""The names a Hugging Face decoder layer takes its KV cache under, across transformers versions."""


@dataclass(frozen=True, kw_only=True)
class Contract:
    """What running the stand-in showed: whether HE generation would work, and why not."""

    holds: bool
    evidence: str
    unread: tuple[str, ...] = ()
    """Arguments the decoder loop passes that DeepSpeed's layer never reads (e.g. the KV cache as `cache`)."""


def injected_layer_convention() -> tuple[inspect.Signature, frozenset[str]]:
    """DeepSpeed's injected layer's forward signature (less self) and the names read out of its **kwargs."""
    from deepspeed.model_implementations.transformers.ds_transformer import DeepSpeedTransformerInference
    from deepspeed.ops.transformer.inference.ds_attention import DeepSpeedSelfAttention

    signature = inspect.signature(DeepSpeedTransformerInference.forward)
    params = list(signature.parameters.values())[1:]
    sources = inspect.getsource(DeepSpeedTransformerInference.forward) + inspect.getsource(DeepSpeedSelfAttention)
    read = set(re.findall(r"kwargs(?:\.get\(|\[)[\"'](\w+)[\"']", sources))
    return signature.replace(parameters=params), frozenset(read)


def container_return_convention(model: Any, layer: Any, policy_cls: type) -> tuple[bool, bool]:
    """(return_tuple, return_single_tuple) of the config DeepSpeed's container gives the injected layer,
    built as `DeepSpeedHybridEngine.new_inference_container` builds it (no kernels are created)."""
    import torch
    from deepspeed.inference.config import DeepSpeedInferenceConfig
    from deepspeed.module_inject.utils import policy_to_ds_container

    container = policy_to_ds_container(
        policy=policy_cls(layer, inference=True),
        config=DeepSpeedInferenceConfig(
            set_empty_params=True, dtype=torch.float32, max_out_tokens=16, min_out_tokens=16, transposed_mode=True
        ),
        model_config=model.config,
        layer_id=0,
        child=layer,
    )
    container.set_tensor_parallel_config(1, None)
    container.initialize_tensors(enable_training=True)
    container.create_ds_model_config()
    return bool(container.ds_model_config.return_tuple), bool(container.ds_model_config.return_single_tuple)


class ContractBreach(RuntimeError):
    """The loop handed the injected layer something it would misread."""


class InjectedLayerStandIn:
    """`DeepSpeedTransformerInference.forward`'s convention around the real HF layer's math."""

    def __init__(self, layer: Any, signature: inspect.Signature, reads: frozenset[str], returns: tuple[bool, bool]):
        self.layer = layer
        self.hf_forward = type(layer).forward.__get__(layer)
        hf_params = inspect.signature(self.hf_forward).parameters
        self.hf_cache_kwarg = next((name for name in _CACHE_KWARGS if name in hf_params), None)
        self.signature, self.reads = signature, reads
        self.return_tuple, self.return_single_tuple = returns
        self.kv: tuple[Any, Any] | None = None
        self.unread: set[str] = set()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as error:
            raise ContractBreach(f"DeepSpeed's layer cannot take the loop's arguments: {error}") from error
        a = {**{k: p.default for k, p in self.signature.parameters.items()}, **bound.arguments}
        extra = dict(a.pop("kwargs", None) or {})
        self.unread |= {name for name in extra if name not in self.reads}
        hidden = a["x"] if a["x"] is not None else extra.get("hidden_states", a["input"])
        mask = (
            a["attention_mask"]
            if a["attention_mask"] is not None
            else (a["attn_mask"] if a["attn_mask"] is not None else a["input_mask"])
        )
        if isinstance(hidden, tuple):
            raise ContractBreach(
                "the decoder loop passed the previous layer's returned tuple on as hidden states "
                "(DeepSpeed's layer then fails at input.size(): 'tuple' object has no attribute 'size')"
            )
        get_present = a["get_present"] or a["get_key_value"] or a["use_cache"]
        if extra.get("first_token", hidden.shape[1] > 1):
            self.kv = None  # the kernels' workspace cache restarts with each prompt
        _ = a["layer_past"] or a["past_key_value"]  # evaluated as DeepSpeed does; its attention never uses it
        output, self.kv = self._math(hidden, mask, extra)
        result: Any = (output, self.kv) if get_present else output
        if self.return_single_tuple:
            return (result,)
        if self.return_tuple:
            return result if type(result) is tuple else (result, None)
        return result

    def _math(self, hidden: Any, mask: Any, extra: dict[str, Any]) -> tuple[Any, tuple[Any, Any]]:
        """The HF layer on DeepSpeed's inputs, with the layer's own past (the kernels' workspace), never the loop's.
        Position arguments go to it too: the kernels derive the same positions themselves (rotary from
        position_ids and their token count), so they are math here, not convention."""
        positional = {k: v for k, v in extra.items() if k in ("position_ids", "position_embeddings", "cache_position")}
        if self.hf_cache_kwarg is None:
            raise ContractBreach(f"{type(self.layer).__name__}.forward takes no KV cache argument")
        if self.hf_cache_kwarg == "past_key_value" and not _supports_cache_class(self.layer):
            out = self.hf_forward(hidden, attention_mask=mask, past_key_value=self.kv, use_cache=True, **positional)
            return out[0], out[-1]
        from transformers import DynamicCache

        cache = DynamicCache()
        index = _layer_index(self.layer)
        if self.kv is not None:  # a private cache holding this layer's past only, at the layer's own index
            cache.update(self.kv[0], self.kv[1], index)
        out = self.hf_forward(hidden, attention_mask=mask, use_cache=True, **{self.hf_cache_kwarg: cache}, **positional)
        return (out[0] if isinstance(out, tuple) else out), _cache_pair(cache, index)


def _supports_cache_class(layer: Any) -> bool:
    """transformers 4.4x marks models whose layers take a Cache object; OPT there still takes legacy tuples."""
    import importlib

    module = importlib.import_module(type(layer).__module__)
    pretrained = [
        c
        for c in vars(module).values()
        if isinstance(c, type) and c.__module__ == module.__name__ and c.__name__.endswith("PreTrainedModel")
    ]
    return all(getattr(c, "_supports_cache_class", True) for c in pretrained)


def _layer_index(layer: Any) -> int:
    for module in layer.modules():
        if isinstance(getattr(module, "layer_idx", None), int):
            return int(module.layer_idx)
    return 0


def _cache_pair(cache: Any, index: int) -> tuple[Any, Any]:
    if hasattr(cache, "layers"):
        return cache.layers[index].keys, cache.layers[index].values
    return cache.key_cache[index], cache.value_cache[index]


def check_contract(
    model: Any, layers: list[Any], policy_cls: type, new_tokens: int = 3, use_cache: bool = True
) -> Contract:
    """Swap stand-ins into `model` (its decoder `layers`) as the Hybrid Engine's eval() does and compare
    greedy generation with the plain model's; the model is left as it was. use_cache=False generates without
    a KV cache (the injected layer then returns a bare tensor when return_tuple is off)."""
    import torch

    signature, reads = injected_layer_convention()
    returns = container_return_convention(model, layers[0], policy_cls)
    model.eval()
    prompt = torch.randint(3, model.config.vocab_size, (2, 5), generator=torch.Generator().manual_seed(0))
    options = {
        "attention_mask": torch.ones_like(prompt),
        "max_new_tokens": new_tokens,
        "do_sample": False,
        "use_cache": use_cache,
    }
    with torch.no_grad():
        expected = model.generate(prompt, **options, pad_token_id=0)
    stand_ins = [InjectedLayerStandIn(layer, signature, reads, returns) for layer in layers]
    for layer, stand_in in zip(layers, stand_ins):
        layer.forward = stand_in
    convention = f"return_tuple={returns[0]}"
    try:
        with torch.no_grad():
            got = model.generate(prompt, **options, pad_token_id=0)
    except Exception as error:  # noqa: BLE001 - the failure is the finding
        unread = tuple(sorted(set().union(*(s.unread for s in stand_ins))))
        seen = str(error) if isinstance(error, ContractBreach) else f"{type(error).__name__}: {error}"
        return Contract(holds=False, evidence=f"{convention}: {seen}".strip(), unread=_kv(unread))
    finally:
        for layer in layers:
            del layer.forward
    unread = _kv(tuple(sorted(set().union(*(s.unread for s in stand_ins)))))
    if not torch.equal(got, expected):
        return Contract(
            holds=False,
            evidence=f"{convention}: generation with the injected layer's convention differs from the model's own "
            f"({got[0].tolist()} vs {expected[0].tolist()})",
            unread=unread,
        )
    return Contract(
        holds=True,
        evidence=f"{convention}: the decoder loop takes the layer's returned tuple, and greedy generation of "
        f"{new_tokens} tokens with the layer's own past equals the model's own",
        unread=unread,
    )


def _kv(names: tuple[str, ...]) -> tuple[str, ...]:
    """The unread arguments that carry the KV cache (position arguments are recomputed by the kernels)."""
    return tuple(n for n in names if n in _CACHE_KWARGS)
