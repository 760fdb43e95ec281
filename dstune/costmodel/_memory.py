"""Per-GPU and per-node host memory terms, in bytes, vectorised over candidates.

Every function takes numpy arrays (one entry per candidate) or scalars.
Model states follow DeepSpeed 0.19's own estimators: without offload ZeRO-2
holds 2P + 18P/N and ZeRO-3 holds 18P/N + 4L per GPU (L: largest layer);
stage 0 holds 20P. Activations follow Korthikanti et al. 2022.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._constants import CostConstants
from ._facts import ModelFacts

BYTES_16BIT = 2


@dataclass
class States:
    """Model-state bytes per GPU (params, grads, optimizer) and host bytes per GPU."""

    params: np.ndarray
    grads: np.ndarray
    optimizer: np.ndarray
    buffers: np.ndarray
    host: np.ndarray

    def __add__(self, other: "States") -> "States":
        return States(*(getattr(self, f) + getattr(other, f) for f in ("params", "grads", "optimizer", "buffers", "host")))


def trained_states(
    params_all: np.ndarray, params_trainable: np.ndarray, stage: np.ndarray, offload: np.ndarray,
    world: int, largest_layer: int, c: CostConstants,
) -> States:
    """A model with an optimizer: actor, critic, or the SFT/RM model.

    Offload moves fp32 master weights, Adam moments and fp32 grads to host;
    at stage 3 DeepSpeed-Chat also offloads the 16-bit parameters.
    """
    n = float(world)
    z3 = stage == 3
    gathered = 2.0 * largest_layer
    params = np.where(z3, np.where(offload, 0.0, BYTES_16BIT * params_all / n) + gathered, BYTES_16BIT * params_all)
    grads_on_gpu = np.select(
        [stage == 0, stage == 1, stage == 2],
        [6.0 * params_trainable, 2.0 * params_trainable + 4.0 * params_trainable / n, 6.0 * params_trainable / n],
        default=4.0 * params_trainable / n + gathered,
    )
    grads = np.where(offload, np.where(z3, gathered, 0.0), grads_on_gpu)
    optimizer = np.where(offload, 0.0, np.where(stage == 0, 12.0, 12.0 / n) * params_trainable)
    bucket = np.where(z3, c.zero3_live_elements, np.minimum(c.zero_bucket_elements, params_trainable)) * BYTES_16BIT
    buffers = np.where(stage == 0, 0.0, bucket)
    host = np.where(offload, (16.0 * params_trainable + np.where(z3, BYTES_16BIT * params_all, 0.0)) / n, 0.0)
    return States(params, grads, optimizer, buffers, host * c.pinned_buffer_factor)


def frozen_states(params_all: int, stage: np.ndarray, offload: np.ndarray, world: int, largest_layer: int,
                  c: CostConstants) -> States:
    """Reference or reward model: 16-bit weights only.

    DeepSpeed honours `offload_param` only at ZeRO-3, so offload_reference_model
    or offload_reward_model change nothing when the model runs at stage 0.
    """
    z3 = stage == 3
    host_resident = z3 & offload
    params = np.where(z3, np.where(offload, 0.0, BYTES_16BIT * params_all / world) + 2.0 * largest_layer,
                      BYTES_16BIT * float(params_all))
    zeros = np.zeros_like(params)
    host = np.where(host_resident, BYTES_16BIT * params_all / world * c.pinned_buffer_factor, 0.0)
    buffers = np.where(z3, c.zero3_live_elements * BYTES_16BIT, 0.0)
    return States(params, zeros, zeros, buffers, host)


def layer_activation_bytes(f: ModelFacts, micro: np.ndarray, seq: np.ndarray, c: CostConstants) -> np.ndarray:
    """One transformer layer's saved activations: s*b*h*(34 + 5*a*s/h), MLP part scaled to the model."""
    mlp_ratio = f.ffn / (4.0 * f.hidden) * (1.5 if f.gated_mlp else 1.0)
    sbh = seq * micro * float(f.hidden)
    scores = 5.0 * f.heads * seq * seq * micro * c.activation_attention_fraction
    return sbh * (15.0 + 19.0 * mlp_ratio) + scores


def train_activation_bytes(f: ModelFacts, micro: np.ndarray, seq: np.ndarray, checkpointing: np.ndarray,
                           c: CostConstants) -> np.ndarray:
    """Activations kept for backward, plus the LM head's logits when the role has one.

    With full checkpointing only each layer's input (2*s*b*h) is kept, plus one
    layer's worth while it is recomputed.
    """
    layer = layer_activation_bytes(f, micro, seq, c)
    kept = np.where(checkpointing, f.layers * 2.0 * seq * micro * f.hidden + layer, f.layers * layer)
    logits = micro * seq * f.vocab * c.logits_bytes_per_element_train if f.has_lm_head else 0.0
    return kept + logits


def eval_activation_bytes(f: ModelFacts, batch: np.ndarray, seq: np.ndarray, c: CostConstants) -> np.ndarray:
    """A no-grad forward keeps one layer live plus the logits (log-probs are gathered from them)."""
    logits = batch * seq * f.vocab * c.logits_bytes_per_element_eval if f.has_lm_head else 0.0
    return layer_activation_bytes(f, batch, seq, c) + logits


def kv_cache_bytes(f: ModelFacts, batch: np.ndarray, tokens: np.ndarray, tp: np.ndarray) -> np.ndarray:
    """2 (K and V) * layers * kv_heads * head_dim * tokens * batch * 2 bytes, split across TP ranks."""
    return 2.0 * f.layers * f.kv_heads * f.head_dim * tokens * batch * BYTES_16BIT / tp


def he_inference_weight_bytes(params_all: np.ndarray, stage: np.ndarray, he: np.ndarray, pinned: np.ndarray,
                              tp: np.ndarray, layers: int, gather_layers: np.ndarray, largest_layer: int) -> np.ndarray:
    """Weights the Hybrid Engine gathers for generation beyond the training partition.

    ZeRO-3 pinned: the whole 16-bit model, or 1/tp of it, plus the layers being
    gathered for TP slicing; unpinned: one layer at a time. Below ZeRO-3 the
    inference containers reuse the training weights.
    """
    whole = BYTES_16BIT * params_all / tp
    tp_staging = np.where(tp > 1, BYTES_16BIT * params_all / layers * np.minimum(gather_layers, layers), 0.0)
    z3 = np.where(pinned, whole + tp_staging, 2.0 * largest_layer)
    return np.where(he & (stage == 3), z3, 0.0)
