"""Per-GPU and per-node host memory terms, in bytes, vectorised over candidates.

Every function takes numpy arrays (one entry per candidate) or scalars.
Model states follow DeepSpeed 0.19.8's code: 16-bit weights and the optimizer's fp32 states stay; gradients
live from a backward to its step (16-bit) or only inside step() (fp32). Activations are the per-token bytes
measured on this stack (see _activations.py).
The Hybrid Engine's inference workspace follows inference_context.h.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..catalog import ModelSpec
from . import _activations as acts
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

    def where(self, kept: np.ndarray) -> States:
        """These states for the candidates where `kept`, nothing for the others."""
        return States(
            *(np.where(kept, getattr(self, f), 0.0) for f in ("params", "grads", "optimizer", "buffers", "host"))
        )


def trained_states(
    params_all: np.ndarray,
    params_trainable: np.ndarray,
    stage: np.ndarray,
    offload: np.ndarray,
    world: int,
    c: CostConstants,
) -> States:
    """A model with an optimizer (actor, critic, or the SFT/RM model): what stays allocated for the whole run.

    Offload moves fp32 master weights and Adam moments to host; at stage 3 DeepSpeed-Chat also offloads the
    16-bit parameters. Of the gradients only ZeRO-3's 16-bit partition buffer is here (stage3.py allocates
    `grad_partitions_flat_buffer` at init, on the host with offload); the others live from a backward to its
    step (`grad_backward_bytes`, `grad_step_bytes`, `grad_accumulated_bytes`), and the gathered ZeRO-3 layers
    only while a model runs.
    """
    n = float(world)
    z3 = stage == 3
    params = np.where(z3, np.where(offload, 0.0, BYTES_16BIT * params_all / n), BYTES_16BIT * params_all)
    optimizer = np.where(offload, 0.0, np.where(stage == 0, 12.0, 12.0 / n) * params_trainable)
    buffers = np.where(z3, zero3_reduce_bucket_bytes(c), 0.0)
    host = np.where(offload, (16.0 * params_trainable + np.where(z3, BYTES_16BIT * params_all, 0.0)) / n, 0.0)
    grads = np.where(z3 & ~offload, BYTES_16BIT * params_trainable / n, 0.0)
    return States(params, grads, optimizer, buffers, host * c.pinned_buffer_factor)


def grad_accumulated_bytes(
    params_trainable: np.ndarray, stage: np.ndarray, offload: np.ndarray, world: int
) -> np.ndarray:
    """16-bit gradients kept between the micro-batches of one accumulation: stages 0-1 keep every parameter's
    .grad until the boundary backward reduces it; stage 2 reduces each backward into a 1/N partition
    (stage_1_and_2.py grads_in_partition, whose views stay the parameters' grads until step), on the host with
    offload; stage 3's partition buffer is a steady state (`trained_states`)."""
    full = BYTES_16BIT * params_trainable
    part = np.where(offload, 0.0, BYTES_16BIT * params_trainable / world)
    return np.select([stage <= 1, stage == 2], [full, part], default=0.0)


def grad_backward_bytes(
    params_trainable: np.ndarray,
    stage: np.ndarray,
    offload: np.ndarray,
    world: int,
    accumulating: np.ndarray | bool = False,
    overlap_comm: bool = True,
) -> np.ndarray:
    """16-bit gradients at the end of a backward. Accumulating, the same as `grad_accumulated_bytes`. At the
    boundary backward of gradient accumulation 1, ZeRO-1 holds only its partition, like ZeRO-2: with
    overlap_comm each gradient is copied into the reduce bucket as it is produced and its .data pointed there
    (stage_1_and_2.py `reduce_independent_p_g_buckets_and_remove_grads`, reached from
    `reduce_ready_partitions_and_remove_grads` when `is_gradient_accumulation_boundary()`), and the partition's
    share copied into `grads_in_partition` (`copy_grads_in_partition`, "zero stage 1 - partition only
    optimizer state"), so no full gradient outlives its bucket. Without overlap_comm ZeRO-1's hooks reduce
    nothing (`if self.partition_gradients or self.overlap_comm: self.reduce_ready_partitions_and_remove_grads`;
    0.9.0 makes no hooks) and every gradient stays to the boundary."""
    held = grad_accumulated_bytes(params_trainable, stage, offload, world)
    part = np.where(offload, 0.0, BYTES_16BIT * params_trainable / world)
    return np.where((stage == 1) & ~np.asarray(accumulating, dtype=bool) & overlap_comm, part, held)


def growing_grads_backward(
    activations: np.ndarray, grads_end: np.ndarray, f: ModelFacts, growing: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(activations, gradients) at the peak of a backward that starts with no gradient and keeps every one it
    makes (stage 0, and stage 1 without overlap_comm, at its first micro-batch): autograd frees a node's saved
    tensors once the node has run while the node's weight gradients stay in `.grad`, so as the backward walks
    the layers down activations fall by a layer's share and gradients rise by a layer's. Both change linearly,
    so the peak is at one end: at the start, all activations and the first gradients (the LM head's, vocab x
    hidden, come first; else a layer's), or at the end, all gradients and the first layer's activations.
    Elsewhere (`growing` False) both are charged whole: the gradients are there from the start (accumulated,
    or ZeRO 1-2's partition, made at the first bucket's reduction)."""
    head = BYTES_16BIT * f.vocab * f.hidden if f.has_lm_head else 0.0
    first = np.minimum(grads_end, head + grads_end / f.layers)
    last_layer = activations / f.layers
    at_start = activations + first >= grads_end + last_layer
    kept = np.where(growing & ~at_start, last_layer, activations)
    grads = np.where(growing & at_start, first, grads_end)
    return kept, grads


def grad_step_bytes(
    params_trainable: np.ndarray,
    stage: np.ndarray,
    offload: np.ndarray,
    world: int,
    c: CostConstants,
    lora: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Gradients inside step(). Stage 0 (FP16_Optimizer): the 16-bit grads plus fp32 copies and their flat
    buffers group by group (`fp16_optimizer_step_bytes`). Stages 1-2: the 16-bit partition, the flat 16-bit
    copy `self.flatten(self.averaged_gradients[i])` and its fp32 conversion, both alive at `.to()`
    (stage_1_and_2.py step: `single_grad_partition = flat_grad_partition.to(...)`, then `del
    flat_grad_partition`; stage 1 has freed its full grads by then): 6 bytes per partition element on top of the
    partition. Stage 3: the same flatten and conversion of one sub-group at a time beside the steady 16-bit
    buffer (stage3.py `_prepare_fp32_grad_for_sub_group`: `self.flatten(self.averaged_gradients[...]).to(...)`,
    `_release_sub_group`; sub_group_size 1e9, which DeepSpeed-Chat leaves unset). With offload the partitions
    are on the host."""
    n = float(world)
    part16 = np.where(stage == 3, 0.0, BYTES_16BIT * params_trainable / n)
    converted = np.where(stage == 3, np.minimum(params_trainable / n, c.zero3_sub_group_elements), params_trainable / n)
    zero = np.where(offload, 0.0, part16 + (BYTES_16BIT + 4.0) * converted)
    stage0 = fp16_optimizer_step_bytes(params_trainable, lora)
    return np.where(stage == 0, stage0, zero)


def zero3_reduce_bucket_bytes(c: CostConstants) -> float:
    """ZeRO-3's 16-bit reduce bucket, allocated once at optimizer init (stage3.py, contiguous_gradients)."""
    return c.zero_bucket_elements * BYTES_16BIT


def zero3_reduce_copy_bytes(params_trainable: np.ndarray, stage: np.ndarray, c: CostConstants) -> np.ndarray:
    """The flat copy each ZeRO-3 backward reduction makes of its bucket: with DeepSpeed's default
    `reduce_scatter` True, stage3.py `__reduce_and_partition_ipg_grads` goes to `__avg_scatter_grads`, whose
    `reduce_scatter_coalesced` (runtime/comm/coalesced_collectives.py) interleaves the bucket's gradients into
    `torch.cat(tensor_partitions_lst_with_padding)`: one 16-bit copy of up to `reduce_bucket_size` elements."""
    return np.where(stage == 3, BYTES_16BIT * np.minimum(params_trainable, c.zero_bucket_elements), 0.0)


def zero3_reused_elements(f: ModelFacts, checkpointing: np.ndarray, c: CostConstants) -> np.ndarray:
    """Elements of the last layers ZeRO-3 leaves gathered from their forward to their backward. A module's
    parameters are not released when the trace brings them back within `stage3_max_reuse_distance` elements
    (partitioned_param_coordinator.py `__params_to_release`, counting the modules after it; DeepSpeed-Chat's
    get_train_ds_config leaves the distance at 1e9). Without checkpointing a module m comes back after the
    modules that follow it in the forward, the LM head's forward and backward, and the same modules' backward:
    kept while 2*after(m) + 2*head < distance. With checkpointing the later layers run forward, recompute and
    backward and m's own layer is recomputed up to m: kept while 3*j*layer + layer - m + 2*head < distance, j
    layers after its own. The head is in `zero3_gathered_bytes`; biases are left out. On a real ZeRO-3 engine
    (tests/costmodel/test_small_terms.py) the first rule holds to the element, the checkpointed one as an upper
    bound within one module."""
    plain, recomputed = _reused(f.spec, c.zero3_max_reuse_elements)
    return np.where(np.asarray(checkpointing, dtype=bool), recomputed, plain)


@functools.lru_cache(maxsize=64)
def _reused(spec: ModelSpec, distance: float) -> tuple[float, float]:
    """(without, with checkpointing) elements kept gathered, from the spec's partitioned Linears in call order."""
    linears = spec.linear_layers()
    head = float(sum(x.in_features * x.out_features for x in linears if x.name == "lm_head"))
    sizes = [float(x.in_features * x.out_features) for x in linears if ".layers." in x.name]
    sizes = [s for s in sizes if s > PERSISTENCE_THRESHOLD]
    per_layer = len(sizes) // max(spec.num_layers, 1)
    layer = sum(sizes[:per_layer])
    plain = after = 0.0
    for size in reversed(sizes):
        if 2.0 * after + 2.0 * head >= distance:
            break
        plain, after = plain + size, after + size
    recomputed = 0.0
    for j in range(spec.num_layers):
        kept = [s for s in sizes[:per_layer] if 3.0 * j * layer + layer - s + 2.0 * head < distance]
        if not kept:
            break
        recomputed += sum(kept)
    return plain, recomputed


PERSISTENCE_THRESHOLD = 1e4
"""DeepSpeed-Chat's `stage3_param_persistence_threshold` (get_train_ds_config, get_eval_ds_config): ZeRO-3
keeps smaller tensors whole on every rank and partitions the rest."""


def he_shared_buffer_bytes(f: ModelFacts, kernels: np.ndarray, tp: np.ndarray) -> np.ndarray:
    """The inference containers' buffers shared by all layers, made once when the HE builds its modules and
    kept: ds_attention.py `DeepSpeedSelfAttention._qkv_buffers` (3*hidden/mp x hidden weight and its bias) and
    ds_mlp.py `DeepSpeedMLP._inter_w_buffers` (intermediate*proj/mp x hidden, proj 2 for a gated MLP), 16-bit:
    about 0.25 GB for OPT-6.7B at mp 1."""
    qkv = 3.0 * np.floor_divide(f.hidden, tp) * (f.hidden + 1.0)
    inter = np.floor_divide(f.ffn * (2 if f.gated_mlp else 1), tp) * (f.hidden + 1.0)
    return np.where(kernels, BYTES_16BIT * (qkv + inter), 0.0)


def zero12_reduce_bucket_bytes(stage: np.ndarray, c: CostConstants) -> np.ndarray:
    """ZeRO 1-2: a 16-bit `reduce_bucket_size` buffer (contiguous_gradients, DeepSpeed's default) and, with
    overlap_comm (`c.overlap_comm`), a second one "to avoid data access conflict", allocated at each backward's
    start and freed after its reduction (stage_1_and_2.py setup_buckets / _release_ipg_buffers; 0.9.0: the
    same two buffers in `backward`)."""
    buckets = 1.0 + (c.overlap_comm >= 0.5)
    return np.where((stage == 1) | (stage == 2), buckets * c.zero_bucket_elements * BYTES_16BIT, 0.0)


def fp16_optimizer_step_bytes(params_trainable: np.ndarray, lora: np.ndarray | float = 0.0) -> np.ndarray:
    """Gradients inside stage 0's FP16_Optimizer.step() (fused_optimizer.py): group by group it converts the
    16-bit grads to fp32 and flattens them (both alive at the flatten), sets that group's 16-bit grads to None
    and keeps the flat fp32 grads until Adam has run. DeepSpeed-Chat's groups come in the order decayed weights,
    LoRA factors, no-decay (get_optimizer_grouped_parameters; the small no-decay group is counted with the
    first). Peak over groups i: 4 bytes per parameter before i, 10 for i's own, 2 after i."""
    adapters = np.minimum(lora, params_trainable)
    first = params_trainable - adapters
    return np.maximum(10.0 * first + 2.0 * adapters, 4.0 * first + 10.0 * adapters)


def zero3_gathered_bytes(largest_layer: int, c: CostConstants) -> float:
    """16-bit parameters a running ZeRO-3 model holds gathered: up to stage3_max_live_parameters, and a
    single larger parameter (the embedding) whole."""
    return BYTES_16BIT * max(float(largest_layer), c.zero3_live_elements)


def frozen_states(
    params_all: int | np.ndarray, stage: np.ndarray, offload: np.ndarray, world: int, c: CostConstants
) -> States:
    """Reference, reward or EMA model: 16-bit weights only.

    DeepSpeed honours `offload_param` only at ZeRO-3, so offload_reference_model
    or offload_reward_model change nothing when the model runs at stage 0. Without an optimizer
    DeepSpeed builds no ZeRO-3 reduce bucket for them.
    """
    z3 = stage == 3
    count = np.asarray(params_all, dtype=float)
    params = np.where(z3, np.where(offload, 0.0, BYTES_16BIT * count / world), BYTES_16BIT * count)
    zeros = np.zeros_like(params)
    host = np.where(z3 & offload, BYTES_16BIT * count / world * c.pinned_buffer_factor, 0.0)
    return States(params, zeros, zeros, zeros, host)


def layer_activation_bytes(
    f: ModelFacts, micro: np.ndarray, seq: np.ndarray, c: CostConstants, dropout: bool = False, device: str = "cuda"
) -> np.ndarray:
    """One transformer layer's saved activations on `device` (plans run on GPUs), from the per-token bytes
    measured (data/activations.json) on the stack `c.published_stack` selects."""
    return acts.layer_bytes(
        f.family, f.hidden, f.ffn, f.kv_width, f.heads, micro * seq, seq, c.published_stack, dropout, device=device
    )


def train_activation_bytes(
    f: ModelFacts,
    micro: np.ndarray,
    seq: np.ndarray,
    checkpointing: np.ndarray,
    c: CostConstants,
    dropout: bool | None = None,
) -> np.ndarray:
    """Activations kept for backward, plus the LM head's logits when the role has one.

    With full checkpointing only each layer's input (2*s*b*h) is kept, plus one layer's worth while it is
    recomputed. `dropout` None: the config's own (DeepSpeed-Chat's step-3 scripts set actor_dropout 0.0).
    """
    layer = layer_activation_bytes(f, micro, seq, c, f.dropout if dropout is None else dropout)
    kept = np.where(checkpointing, f.layers * 2.0 * seq * micro * f.hidden + layer, f.layers * layer)
    logits = micro * seq * f.vocab * c.logits_bytes_per_element_train if f.has_lm_head else 0.0
    return kept + logits


def hf_loss_upcast_bytes(f: ModelFacts, micro: np.ndarray, seq: np.ndarray, c: CostConstants) -> np.ndarray:
    """transformers' own loss (SFT passes labels) casts the logits to fp32 and keeps that copy for backward
    (installed stack; 4.28 kept 16-bit ones): measured bytes per logit element times vocab*seq*micro."""
    per_element = acts.hf_loss_logits_bytes(f.family, c.published_stack) if f.has_lm_head else 0.0
    return micro * seq * f.vocab * per_element


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


FUSED_LINEARS = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")
"""The Linears whose weights the Hybrid Engine's OPT/LLaMA containers concatenate (q/k/v; LLaMA's gate/up)."""


def he_fused_copy_bytes(
    f: ModelFacts, stage: np.ndarray, kernels: np.ndarray, frozen: np.ndarray | float = 0.0
) -> np.ndarray:
    """The Hybrid Engine's fused weight copies at ZeRO 0-2: each OPT/LLaMA container concatenates q/k/v into a
    new `qkvw` (and LLaMA's gate/up into `_h4h_w`) with torch.cat (HFOPTLayerPolicy.attention,
    HybridGatedMLPContainer) and points the parameters into it (set_attn_params_wo_copy). The old storage lives
    on only where the optimizer's flat 16-bit buffer holds it, i.e. for trainable weights: `frozen` (elements of
    those weights that LoRA froze, `he_fused_frozen`) are in no optimizer group, so their copy is moved, not
    doubled. At ZeRO-3 the containers use the partitioned parameters as they are."""
    per_layer = f.hidden * (f.hidden + 2 * f.kv_width)
    if f.family == "opt":
        per_layer += f.hidden + 2 * f.kv_width  # q/k/v biases, fused the same way (LoRA leaves biases trainable)
    if f.gated_mlp:
        per_layer += 2 * f.hidden * f.ffn
    doubled = float(per_layer * f.layers) - np.asarray(frozen, dtype=float)
    return np.where(kernels & (stage < 3), BYTES_16BIT * doubled, 0.0)


def he_fused_frozen(f: ModelFacts, module_name: str) -> int:
    """Elements of the fused weights that DeepSpeed-Chat's LoRA on `module_name` freezes (it freezes every
    matched Linear's weight, `LinearLayer_LoRA.__init__`)."""
    return sum(
        x.in_features * x.out_features
        for x in f.spec.linear_layers()
        if module_name in x.name and x.name.rsplit(".", 1)[-1] in FUSED_LINEARS
    )
