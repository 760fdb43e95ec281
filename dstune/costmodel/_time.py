"""Per-phase time terms, in seconds, vectorised over candidates.

Compute is FLOPs over an achieved fraction of peak that grows with GEMM size;
decode is the slower of weight+KV reads at HBM speed and its FLOPs, plus a
per-layer launch cost that the Hybrid Engine's kernels cut and a per-token cost of the generate()
loop that they do not; ZeRO-3 pays a fixed cost per layer fetched; collectives use
ring formulas over the slowest link a ring crosses (Hybrid Engine TP all-reduces stay inside a node).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..catalog import ClusterSpec
from ._constants import CostConstants
from ._facts import ModelFacts

GB = 1e9


@dataclass(frozen=True)
class Hardware:
    """The cluster reduced to the rates the time terms need."""

    world: int
    gpus_per_node: int
    peak_flops: float | np.ndarray
    """Per row when the candidates' dtypes differ (dstune.costmodel.estimate_table)."""
    hbm_bytes_per_s: float
    link_bytes_per_s: float
    """Slowest link a world-wide ring crosses (ZeRO collectives)."""
    intra_link_bytes_per_s: float
    """Link inside a node: Hybrid Engine TP groups are consecutive ranks, so they sit inside one node."""
    host_link_bytes_per_s: float

    @classmethod
    def of(cls, cluster: ClusterSpec, dtype: str, c: CostConstants) -> Hardware:
        gpu = cluster.gpu
        intra = gpu.intra_node_link_in_GB_per_sec
        link = min(intra, cluster.inter_node_in_GB_per_sec) if cluster.nodes > 1 else intra
        return cls(
            world=cluster.world_size,
            gpus_per_node=cluster.gpus_per_node,
            peak_flops=gpu.peak_tflops(dtype) * 1e12,
            hbm_bytes_per_s=gpu.hbm_bandwidth_in_GB_per_sec * GB * c.hbm_efficiency,
            link_bytes_per_s=link * GB * c.link_efficiency,
            intra_link_bytes_per_s=intra * GB * c.link_efficiency,
            host_link_bytes_per_s=gpu.host_link_in_GB_per_sec * GB * c.host_link_efficiency,
        )


def matmul_efficiency(tokens: np.ndarray, hidden: int, c: CostConstants) -> np.ndarray:
    """Achieved fraction of peak: small micro-batches and narrow models starve the tensor cores."""
    return c.matmul_efficiency_max * tokens / (tokens + c.matmul_half_tokens) * hidden / (hidden + c.matmul_half_hidden)


def forward_flops(f: ModelFacts, tokens: np.ndarray, context: np.ndarray) -> np.ndarray:
    """2 FLOPs per weight per token plus causal attention scores (QK^T and AV)."""
    return tokens * (2.0 * f.matmul_params + 2.0 * f.layers * f.hidden * context)


def compute_seconds(flops: np.ndarray, tokens: np.ndarray, f: ModelFacts, hw: Hardware, c: CostConstants) -> np.ndarray:
    return flops / (hw.peak_flops * matmul_efficiency(tokens, f.hidden, c))


def allgather_seconds(total_bytes: np.ndarray, hw: Hardware) -> np.ndarray:
    """Ring all-gather or reduce-scatter of `total_bytes` (the full tensor) across the world."""
    if hw.world == 1:
        return np.zeros_like(np.asarray(total_bytes, dtype=float))
    return (hw.world - 1) / hw.world * total_bytes / hw.link_bytes_per_s


def allreduce_seconds(total_bytes: np.ndarray, hw: Hardware) -> np.ndarray:
    return 2.0 * allgather_seconds(total_bytes, hw)


def overlapped(compute: np.ndarray, comm: np.ndarray, c: CostConstants) -> np.ndarray:
    """Compute and communication run side by side; only part of the shorter one hides."""
    return np.maximum(compute, comm) + (1.0 - c.comm_overlap) * np.minimum(compute, comm)


def train_backward_factor(weight_grad_share: np.ndarray, checkpointing: np.ndarray) -> np.ndarray:
    """Backward cost in forwards: 1 for activation grads, plus the share of matmul weights that get a
    weight gradient (frozen weights get none), +1 to recompute."""
    return 1.0 + weight_grad_share + np.where(checkpointing, 1.0, 0.0)


def zero3_fetch_seconds(layers: int, c: CostConstants) -> float:
    """Fixed cost of fetching one model's ZeRO-3 partitions once, layer by layer: DeepSpeed's per-module
    pre/post hooks (PartitionedParameterCoordinator) and the all-gather calls they issue, paid per layer
    whatever the batch; it dominates when the micro-batch is small."""
    return layers * c.zero3_fetch_overhead_s


def zero_micro_comm_seconds(
    params_all: np.ndarray,
    params_trainable: np.ndarray,
    stage: np.ndarray,
    offload: np.ndarray,
    layers: int,
    gas: np.ndarray,
    hw: Hardware,
    c: CostConstants,
) -> np.ndarray:
    """Collectives inside each micro-batch: ZeRO-3 gathers weights twice and reduce-scatters grads
    (each pass layer by layer, with its fixed per-layer fetch cost); ZeRO-2 all-reduces each bucket as grads
    are produced and keeps its partition's share: DeepSpeed's default `use_multi_rank_bucket_allreduce` True
    (zero/config.py; stage_1_and_2.py `average_tensor` -> `allreduce_and_scatter`, which DeepSpeed-Chat does
    not change), twice a reduce-scatter's volume. ZeRO-1 does the same inside the boundary backward,
    overlapped with it as ZeRO-2's (the same ipg buckets with overlap_comm), once per `gas` micro-batches. At
    ZeRO-3 with offload the partitions are fetched from host memory first."""
    z3 = 2.0 * allgather_seconds(2.0 * params_all, hw) + allgather_seconds(2.0 * params_trainable, hw)
    z3 = z3 + 3.0 * zero3_fetch_seconds(layers, c)
    z3_host = np.where(offload, 2.0 * 2.0 * params_all / hw.world / hw.host_link_bytes_per_s, 0.0)
    z2 = allreduce_seconds(2.0 * params_trainable, hw)
    return np.select([stage == 3, stage == 2, stage == 1], [z3 + z3_host, z2, z2 / gas], default=0.0)


def optimizer_step_seconds(
    params_all: np.ndarray,
    params_trainable: np.ndarray,
    stage: np.ndarray,
    offload: np.ndarray,
    hw: Hardware,
    c: CostConstants,
) -> np.ndarray:
    """Gradient all-reduce (stage 0; stage 1 reduces inside its boundary backward), the Adam step (GPU, or CPU with PCIe round trips when
    offloaded) and the parameter all-gather that follows a partitioned step (stages 1-2)."""
    n = float(hw.world)
    shard = np.where(stage == 0, params_trainable, params_trainable / n)
    reduce = np.where(stage == 0, allreduce_seconds(2.0 * params_trainable, hw), 0.0)
    gpu_adam = shard * c.gpu_adam_bytes_per_param / hw.hbm_bytes_per_s
    cpu_adam = shard * hw.gpus_per_node / c.cpu_adam_params_per_s
    pcie = shard * (2.0 + 2.0) / hw.host_link_bytes_per_s
    adam = np.where(offload, cpu_adam + pcie, gpu_adam)
    regather = np.where((stage == 1) | (stage == 2), allgather_seconds(2.0 * params_trainable, hw), 0.0)
    return reduce + adam + regather + c.step_overhead_s


def generation_flops_per_gpu(
    f: ModelFacts, tokens_gathered: np.ndarray, context: np.ndarray, tp: np.ndarray, lm_head_params: float
) -> np.ndarray:
    """FLOPs one GPU spends on `tokens_gathered` tokens under HE tensor parallelism: every rank runs the
    gathered batch (tp x its own) through 1/tp of each layer and through the whole, unsplit LM head."""
    layer_matmul = f.matmul_params - lm_head_params
    return tokens_gathered * (2.0 * layer_matmul / tp + 2.0 * lm_head_params + 2.0 * f.layers * f.hidden * context / tp)


def tp_allreduce_seconds(total_bytes: np.ndarray, tp: np.ndarray, hw: Hardware, c: CostConstants) -> np.ndarray:
    """One ring all-reduce inside a TP group (intra-node link), with its fixed call cost."""
    ring = 2.0 * (tp - 1.0) / tp * total_bytes / hw.intra_link_bytes_per_s
    return np.where(tp > 1, c.collective_latency_s + ring, 0.0)


def decode_token_seconds(
    f: ModelFacts,
    layer_params: np.ndarray,
    lm_head_params: float,
    batch: np.ndarray,
    context: np.ndarray,
    tp: np.ndarray,
    he_kernels: np.ndarray,
    hw: Hardware,
    c: CostConstants,
) -> np.ndarray:
    """One generated token for a GPU's batch `batch` (its own prompts; tp x that run on it under HE TP):
    memory-bound reads (1/tp of the layers, the whole LM head, the KV cache, which TP does not shrink per
    GPU) or compute, plus launch costs per layer, the generate() loop's own cost per token, and two TP
    all-reduces per layer of the gathered hidden states."""
    gathered = batch * tp
    weights = 2.0 * layer_params / tp + 2.0 * lm_head_params
    kv = 2.0 * f.layers * f.kv_heads * f.head_dim * context * batch * 2.0
    memory = (weights + kv) / hw.hbm_bytes_per_s
    flops = generation_flops_per_gpu(f, gathered, context, tp, lm_head_params)
    compute = flops / (hw.peak_flops * c.matmul_efficiency_max * f.hidden / (f.hidden + c.matmul_half_hidden))
    launch = f.layers * np.where(he_kernels, c.decode_overhead_per_layer_s_he, c.decode_overhead_per_layer_s_native)
    tp_reduce = 2.0 * f.layers * tp_allreduce_seconds(gathered * f.hidden * 2.0, tp, hw, c)
    return np.maximum(memory, compute) + launch + c.decode_overhead_per_token_s + tp_reduce


def zero3_gather_seconds(
    params_all: np.ndarray | float, layers: int, offload: np.ndarray, hw: Hardware, c: CostConstants
) -> np.ndarray:
    """Gathering every ZeRO-3 partition of a model once (layer by layer, each with its fixed fetch cost).
    `params_all` is per row, or one count for a frozen model every row holds whole."""
    params = np.asarray(params_all, dtype=float)
    host = np.where(offload, 2.0 * params / hw.world / hw.host_link_bytes_per_s, 0.0)
    return allgather_seconds(2.0 * params, hw) + zero3_fetch_seconds(layers, c) + host
