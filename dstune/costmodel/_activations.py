"""Saved activations of a training forward, from per-token bytes measured on real models (data/activations.json).

Per token a decoder layer keeps `hidden`*h + `ffn`*ffn + `kv`*kv_width + `heads`*a + `token` bytes, plus
`scores`*a*s where attention is eager (its s^2 probabilities); scripts/measure_activations.py measures them. Two
stacks: the installed one (SDPA, transformers' default for OPT and LLaMA) and the one the published rows ran
(2023: transformers 4.28.1, fp16, eager attention only), selected by `CostConstants.published_stack`.
Qwen2 and Mistral layers are LLaMA's (RMSNorm, SwiGLU, rotary, grouped KV). Each stack says the device it was
measured on; the cost model asks for the GPU's figures (`coefficients`' device).
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


CUDA_DROPOUT_MASK_BYTES = 1
"""On a GPU, F.dropout takes aten's fused kernel (`is_fused_kernel_acceptable` holds for CUDA tensors), whose
`native_dropout` keeps a bool mask (aten/src/ATen/native/cuda/Dropout.cu `dropout_cuda`: `mask =
at::empty_like(self, self.options().dtype(kBool))`): 1 byte per element, where the CPU the table was measured on
keeps a 16-bit noise tensor."""
DEVICE_MASK_BYTES = {"cuda": CUDA_DROPOUT_MASK_BYTES}


def coefficients(
    family: str, published: float, dropout: bool, attention: str | None = None, device: str = "cuda"
) -> dict[str, float]:
    """Measured per-token bytes of one layer of `family` on a stack, with or without the config's dropout, for
    `device`; `attention` None: the stack's default ('sdpa' installed, 'eager' published). The table is measured
    on the device its stack names ('cpu'); on another the dropout masks take that device's width: OPT's two
    hidden-wide masks per layer, 2 bytes each on the CPU, are 1 byte on a GPU (about 8% of an OPT layer)."""
    base = _LAYER_FAMILY.get(family, "opt")
    stack = _stack(published)
    table = stack["layer_bytes_per_token"]
    key = f"{base}/{attention or stack['attention']}/dropout{0.1 if dropout and base == 'opt' else 0:g}"
    k = dict(table[key])
    measured_width = float(stack["dropout_mask_bytes_per_element"])
    width = DEVICE_MASK_BYTES.get(device, measured_width) if device != stack["device"] else measured_width
    if key.endswith("dropout0.1") and width != measured_width:
        masks = (k["hidden"] - table[key.replace("dropout0.1", "dropout0")]["hidden"]) / measured_width
        k["hidden"] -= masks * (measured_width - width)
    return k


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
    device: str = "cuda",
) -> np.ndarray:
    """One layer's saved bytes for `tokens` (micro-batch x seq) tokens of sequences of length `seq`, on `device`."""
    k = coefficients(family, published, dropout, attention, device)
    linear = k["hidden"] * hidden + k["ffn"] * ffn + k["kv"] * kv_width + k["heads"] * heads + k["token"]
    return tokens * (linear + k["scores"] * heads * np.asarray(seq, dtype=float))


def hf_loss_logits_bytes(family: str, published: float) -> float:
    """Saved bytes per logit element when transformers' own loss runs (installed: it upcasts to fp32)."""
    return float(_stack(published)["hf_loss_logits_bytes_per_element"][_LAYER_FAMILY.get(family, "opt")])
