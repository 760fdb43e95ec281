"""Per-GPU and per-node host memory terms, in bytes, vectorised over candidates.

Every function takes numpy arrays (one entry per candidate) or scalars.
Model states follow DeepSpeed 0.19's own estimators: without offload ZeRO-2
holds 2P + 18P/N and ZeRO-3 holds 18P/N + 4L per GPU (L: largest layer, gathered
only while the model runs); stage 0 holds 16P plus 2P of 16-bit grads between
backward and step and 8P more inside step(). Activations follow Korthikanti et al. 2022.
The Hybrid Engine's inference workspace follows inference_context.h.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._constants import CostConstants
from ._facts import ModelFacts

BYTES_16BIT = 2


@dataclass
class States:
    """Model-state bytes per GPU that stay allocated for the whole step, and host bytes per GPU."""

    params: np.ndarray
    grads: np.ndarray
    optimizer: np.ndarray
    buffers: np.ndarray
    host: np.ndarray

    def __add__(self, other: States) -> States:
        return States(
            *(getattr(self, f) + getattr(other, f) for f in ("params", "grads", "optimizer", "buffers", "host"))
        )


def trained_states(
    params_all: np.ndarray,
    params_trainable: np.ndarray,
    stage: np.ndarray,
    offload: np.ndarray,
    world: int,
    c: CostConstants,
) -> States:
    """A model with an optimizer (actor, critic, or the SFT/RM model): what stays allocated.

    Offload moves fp32 master weights, Adam moments and fp32 grads to host; at stage 3
    DeepSpeed-Chat also offloads the 16-bit parameters. Stage-0 16-bit grads and the gathered
    ZeRO-3 layers are not here: they live only in some phases (see `stage0_*`, `zero3_gathered_bytes`).
    """
    n = float(world)
    z3 = stage == 3
    params = np.where(z3, np.where(offload, 0.0, BYTES_16BIT * params_all / n), BYTES_16BIT * params_all)
    grads_on_gpu = np.select(
        [stage == 0, stage == 1, stage == 2],
        [0.0 * params_trainable, 2.0 * params_trainable + 4.0 * params_trainable / n, 6.0 * params_trainable / n],
        default=4.0 * params_trainable / n,
    )
    grads = np.where(offload, 0.0, grads_on_gpu)
    optimizer = np.where(offload, 0.0, np.where(stage == 0, 12.0, 12.0 / n) * params_trainable)
    buffers = np.where(z3, zero3_reduce_bucket_bytes(c), 0.0)
    host = np.where(offload, (16.0 * params_trainable + np.where(z3, BYTES_16BIT * params_all, 0.0)) / n, 0.0)
    return States(params, grads, optimizer, buffers, host * c.pinned_buffer_factor)


def zero3_reduce_bucket_bytes(c: CostConstants) -> float:
    """ZeRO-3's 16-bit reduce bucket, allocated once at optimizer init (stage3.py, contiguous_gradients)."""
    return c.zero_bucket_elements * BYTES_16BIT


def zero12_reduce_bucket_bytes(stage: np.ndarray, c: CostConstants) -> np.ndarray:
    """ZeRO 1-2 with overlap_comm: two 16-bit `reduce_bucket_size` buffers, allocated at each backward's
    start and freed after its reduction (stage_1_and_2.py setup_buckets / _release_ipg_buffers)."""
    return np.where((stage == 1) | (stage == 2), 2.0 * c.zero_bucket_elements * BYTES_16BIT, 0.0)


def stage0_grad_bytes(params_trainable: np.ndarray, stage: np.ndarray) -> np.ndarray:
    """Stage 0 (FP16_Optimizer): 16-bit grads from the first backward until step() sets them to None."""
    return np.where(stage == 0, BYTES_16BIT * params_trainable, 0.0)


def stage0_step_bytes(params_trainable: np.ndarray, stage: np.ndarray) -> np.ndarray:
    """Inside FP16_Optimizer.step() (fused_optimizer.py): each group's grads converted to fp32 one by one
    and then flattened into one fp32 buffer, both alive at the flatten: 8 bytes per parameter of the
    largest group (DeepSpeed-Chat's weight-decay group: nearly every trainable weight)."""
    return np.where(stage == 0, 8.0 * params_trainable, 0.0)


def zero3_gathered_bytes(largest_layer: int, c: CostConstants) -> float:
    """16-bit parameters a running ZeRO-3 model holds gathered: up to stage3_max_live_parameters, and a
    single larger parameter (the embedding) whole."""
    return BYTES_16BIT * max(float(largest_layer), c.zero3_live_elements)


def frozen_states(params_all: int, stage: np.ndarray, offload: np.ndarray, world: int, c: CostConstants) -> States:
    """Reference or reward model: 16-bit weights only.

    DeepSpeed honours `offload_param` only at ZeRO-3, so offload_reference_model
    or offload_reward_model change nothing when the model runs at stage 0. Without an optimizer
    DeepSpeed builds no ZeRO-3 reduce bucket for them.
    """
    z3 = stage == 3
    params = np.where(z3, np.where(offload, 0.0, BYTES_16BIT * params_all / world), BYTES_16BIT * float(params_all))
    zeros = np.zeros_like(params)
    host = np.where(z3 & offload, BYTES_16BIT * params_all / world * c.pinned_buffer_factor, 0.0)
    return States(params, zeros, zeros, zeros, host)


def layer_activation_bytes(f: ModelFacts, micro: np.ndarray, seq: np.ndarray, c: CostConstants) -> np.ndarray:
    """One transformer layer's saved activations: s*b*h*(34 + 5*a*s/h), MLP part scaled to the model."""
    mlp_ratio = f.ffn / (4.0 * f.hidden) * (1.5 if f.gated_mlp else 1.0)
    sbh = seq * micro * float(f.hidden)
    scores = 5.0 * f.heads * seq * seq * micro * c.activation_attention_fraction
    return sbh * (15.0 + 19.0 * mlp_ratio) + scores


def train_activation_bytes(
    f: ModelFacts, micro: np.ndarray, seq: np.ndarray, checkpointing: np.ndarray, c: CostConstants
) -> np.ndarray:
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


def kv_cache_bytes(f: ModelFacts, batch: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """transformers' own cache: 2 (K and V) * layers * kv_heads * head_dim * tokens * batch * 2 bytes."""
    return 2.0 * f.layers * f.kv_heads * f.head_dim * tokens * batch * BYTES_16BIT


def _effective_head_size(f: ModelFacts) -> int:
    """inference_context.h pads heads to 32, 64 or 128 for flash attention (wider heads stay as they are)."""
    head = f.hidden // f.heads
    return head if head > 128 else (32 if head <= 32 else 64 if head <= 64 else 128)


def workspace_cache_bytes(f: ModelFacts, batch: np.ndarray, max_out_tokens: np.ndarray, mp: np.ndarray) -> np.ndarray:
    """The KV-cache part of the HE inference workspace (inference_context.h GenWorkSpace `cache_size`):
    layers * batch * (heads*padded_head / mp) * 2 * max_out_tokens * 2 bytes, for the batch the kernels run
    (TP ranks run the gathered batch, so per GPU it does not shrink with mp)."""
    width = np.floor_divide(f.heads * _effective_head_size(f), mp)
    return f.layers * batch * width * 2.0 * max_out_tokens * BYTES_16BIT


def workspace_other_bytes(f: ModelFacts, batch: np.ndarray, max_out_tokens: np.ndarray, mp: np.ndarray) -> np.ndarray:
    """The rest of the workspace: `activation_size` 10*heads*padded_head*batch (not split by mp) and the
    attention-score `temp_size` batch*(heads/mp)*max_out_tokens, each per token of max_out_tokens, 2 bytes."""
    activation = 10.0 * f.heads * _effective_head_size(f) * batch
    temp = batch * np.floor_divide(f.heads, mp) * max_out_tokens
    return (activation + temp) * max_out_tokens * BYTES_16BIT


def he_tp_weight_bytes(
    layer_params: np.ndarray, other_params: float, tp: np.ndarray, gather_layers: np.ndarray, layers: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pinned ZeRO-3 with inference_tp_size > 1 (hybrid_engine.py generate): (while gathering, while generating).

    Layers are gathered `tp_gather_partition_size` at a time and each keeps its 1/tp slice; then the
    non-TP parameters (embeddings, LM head, norms) are gathered whole around `_generate`.
    """
    slices = BYTES_16BIT * layer_params / tp
    staging = BYTES_16BIT * layer_params / layers * np.minimum(gather_layers, layers)
    return slices + staging, slices + BYTES_16BIT * other_params
