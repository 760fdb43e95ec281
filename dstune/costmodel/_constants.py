"""Every efficiency constant of the analytic model, in one place.

Calibration (search/_calibrate.py) fits these to measured trials and saves
them as plain JSON; the defaults are public rules of thumb for A100/H100
class GPUs, so an uncalibrated estimate is a prior, not a measurement.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, kw_only=True)
class CostConstants:
    matmul_efficiency_max: float = 0.55
    """Fraction of dense peak TFLOP/s that large training GEMMs reach."""
    matmul_half_tokens: float = 1024.0
    """Tokens per micro-batch at which GEMM efficiency is half its maximum."""
    matmul_half_hidden: float = 768.0
    """Hidden size at which GEMM efficiency is half its maximum (small models run poorly)."""
    hbm_efficiency: float = 0.70
    """Fraction of HBM bandwidth that decode (weight + KV reads) reaches."""
    link_efficiency: float = 0.65
    """Fraction of the link's bandwidth that NCCL collectives reach."""
    host_link_efficiency: float = 0.70
    """Fraction of PCIe host<->device bandwidth that offload transfers reach."""
    comm_overlap: float = 0.5
    """Fraction of ZeRO communication hidden behind compute."""
    cpu_adam_params_per_s: float = 1.0e9
    """DeepSpeedCPUAdam parameters updated per second per node (all ranks together)."""
    gpu_adam_bytes_per_param: float = 36.0
    """HBM bytes FusedAdam moves per trainable parameter (fp32 p, m, v, grad in and out)."""
    decode_overhead_per_layer_s_native: float = 4.0e-4
    """Launch/Python cost per layer per generated token in transformers' generate()."""
    decode_overhead_per_layer_s_he: float = 3.0e-5
    """Same with the Hybrid Engine's inference kernels."""
    decode_overhead_per_token_s: float = 1.0e-3
    """Cost per generated token outside the layers, with or without the Hybrid Engine: transformers'
    generate() loop (input preparation, logits processors, stopping criteria, which read a flag back
    from the GPU every token, so the host's work does not hide behind the GPU's)."""
    collective_latency_s: float = 2.0e-5
    """Fixed cost of one collective call (TP all-reduce in decode)."""
    zero3_fetch_overhead_s: float = 1.0e-3
    """Fixed cost per transformer layer each time ZeRO-3 fetches a model's partitions (forward, backward,
    gradient reduce-scatter; every token in unpinned generation): DeepSpeed's per-submodule hooks and the
    all-gather calls they issue, whatever the batch."""
    step_overhead_s: float = 0.02
    """Fixed per optimizer-step cost (hooks, clipping, bookkeeping)."""
    published_stack: float = 0.0
    """Which measured activations (costmodel/data/activations.json) a layer keeps: 0 the installed stack
    (transformers' default SDPA), 1 the stack the published rows ran (2023: transformers 4.28.1, fp16, eager
    attention, which keeps s^2 probabilities). Not fitted: calibration/_reproduce.py scores published rows with 1."""
    logits_bytes_per_element_train: float = 8.0
    """Bytes per logit element while training (16-bit logits, log-softmax and their grads)."""
    logits_bytes_per_element_eval: float = 6.0
    """Bytes per logit element in a no-grad forward (16-bit logits and fp32 log-softmax)."""
    memory_overhead_fraction: float = 0.08
    """Allocator fragmentation and reserved-but-unused memory, as a fraction of what a step allocates and frees
    through torch's caching allocator (`_trained.peak`'s `churned`: not the HE's cudaMalloc workspace, not what
    is allocated once at init)."""
    cuda_context_bytes: float = 1.0e9
    """CUDA context, NCCL and cuBLAS workspaces per GPU."""
    zero_bucket_elements: float = 5.0e8
    """DeepSpeed's default `reduce_bucket_size` (elements; DeepSpeed-Chat leaves it unset). With
    `overlap_comm` ZeRO 1-2 allocate two such 16-bit buffers for every backward and ZeRO-3 keeps one
    for the whole run, whatever the trainable size (stage_1_and_2.py setup_buckets, stage3.py)."""
    overlap_comm: float = 1.0
    """1 where DeepSpeed-Chat's ZeRO 1-2 configs set `overlap_comm`, 0 where they leave DeepSpeed's default (off
    below ZeRO-3: zero/config.py `overlap_comm_valid`). Its get_train_ds_config sets it since DeepSpeedExamples
    f73a6ed6 (#846, 2024-09-17), as dstune's export does; the April 2023 release the published rows ran
    (e468799f, and 3a77097a that added the training logs) did not. Not fitted: calibration/_reproduce.py
    scores rows of the `dschat-2023` stack with 0."""
    zero3_sub_group_elements: float = 1.0e9
    """ZeRO-3's `sub_group_size` default (DeepSpeed-Chat leaves it unset): step() makes one sub-group's fp32
    gradient partition at a time."""
    zero3_live_elements: float = 3.0e7
    """`stage3_max_live_parameters` as DeepSpeed-Chat sets it: the most gathered ZeRO-3 elements live
    at once in a running model (a single larger parameter is still gathered whole)."""
    zero3_max_reuse_elements: float = 1.0e9
    """`stage3_max_reuse_distance` (DeepSpeed's default; DeepSpeed-Chat's get_train_ds_config leaves it unset):
    ZeRO-3 keeps a gathered parameter whose next use in the trace is nearer than this many elements."""
    empty_cache_s: float = 0.3
    """gc.collect() + torch.cuda.empty_cache() in a process holding four models. The Hybrid Engine
    runs it every generate with `release_inference_cache` and in its pinned TP path (hybrid_engine.py)."""
    cuda_malloc_bytes_per_s: float = 1.0e11
    """Rate at which memory handed back by empty_cache is cudaMalloc'ed again (the re-taken inference
    workspace, then the allocator's pool regrowing for training)."""
    host_bytes_per_rank: float = 3.0e9
    """Resident host memory of one training process before any offload."""
    pinned_buffer_factor: float = 1.5
    """Host memory factor for pinned offload buffers (DeepSpeed's additional_buffer_factor)."""
    headroom_fraction: float = 0.10
    """GPU memory kept free for a plan to count as feasible: the one headroom the cost model's verdicts
    and a search's memory cap (`dstune search --headroom` replaces it) both read."""

    def memory_cap_bytes(self, capacity_bytes: float) -> float:
        """The peak a production plan may reach on a card of `capacity_bytes`: the card less the headroom."""
        return capacity_bytes * (1.0 - self.headroom_fraction)

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CostConstants:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: float(v) for k, v in values.items() if k in known})

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> CostConstants:
        return cls.from_dict(json.loads(path.read_text()))


DEFAULT_CONSTANTS = CostConstants()
