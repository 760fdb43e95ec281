"""Saved activations of a training forward, from per-token bytes measured on real models (data/activations.json).

Per token a decoder layer keeps `hidden`*h + `ffn`*ffn + `kv`*kv_width + `heads`*a + `token` bytes, plus
`scores`*a*s where attention is eager (its s^2 probabilities); scripts/measure_activations.py measures them. Two
stacks: the installed one (SDPA, transformers' default for OPT and LLaMA) and the one the published rows ran
(2023: transformers 4.28.1, fp16, eager attention only), selected by `CostConstants.published_stack`.
Qwen2 and Mistral layers are LLaMA's (RMSNorm, SwiGLU, rotary, grouped KV).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

ACTIVATIONS_FILE = Path(__file__).parent / "data" / "activations.json"
_LAYER_FAMILY = {"opt": "opt", "llama": "llama", "qwen2": "llama", "mistral": "llama"}


@functools.cache
def _stacks() -> dict:
    return json.loads(ACTIVATIONS_FILE.read_text())["stacks"]


def _stack(published: float) -> dict:
    return _stacks()["published" if published > 0 else "installed"]


def coefficients(family: str, published: float, dropout: bool, attention: str | None = None) -> dict[str, float]:
    """Measured per-token bytes of one layer of `family` on a stack, with or without the config's dropout;
    `attention` None: the stack's default ('sdpa' installed, 'eager' published)."""
    base = _LAYER_FAMILY.get(family, "opt")
    stack = _stack(published)
    key = f"{base}/{attention or stack['attention']}/dropout{0.1 if dropout and base == 'opt' else 0:g}"
    return stack["layer_bytes_per_token"][key]


def layer_bytes(
    family: str,
    hidden: int,
    ffn: int,
    kv_width: int,
    heads: int,
    tokens: np.ndarray,
    seq: np.ndarray,
    published: float,
    dropout: bool,
    attention: str | None = None,
) -> np.ndarray:
    """One layer's saved bytes for `tokens` (micro-batch x seq) tokens of sequences of length `seq`."""
    k = coefficients(family, published, dropout, attention)
    linear = k["hidden"] * hidden + k["ffn"] * ffn + k["kv"] * kv_width + k["heads"] * heads + k["token"]
    return tokens * (linear + k["scores"] * heads * np.asarray(seq, dtype=float))


def hf_loss_logits_bytes(family: str, published: float) -> float:
    """Saved bytes per logit element when transformers' own loss runs (installed: it upcasts to fp32)."""
    return float(_stack(published)["hf_loss_logits_bytes_per_element"][_LAYER_FAMILY.get(family, "opt")])
