"""Constants that only OpenRLHF's iteration needs (vLLM, Ray, sleep/wake), each with what backs it.

Two are fitted, each a single factor on three rows of the OpenRLHF paper (arXiv 2405.11143, Tables 3 and 5;
data/published.yaml, fit and leave-one-out in _openrlhf_paper.py): `weight_sync_bytes_per_s` and
`train_time_factor`. Every other constant is a prior that no published row constrains, and an estimate's
`constants_basis` says so.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class OpenRLHFConstants:
    vllm_max_num_seqs: int = 128
    """Running sequences per engine step. OpenRLHF builds its engines with AsyncLLMEngine.from_engine_args and
    no max_num_seqs, so the usage context is ENGINE_CONTEXT, which EngineArgs' get_batch_defaults does not map:
    SchedulerConfig.DEFAULT_MAX_NUM_SEQS applies (vllm/config/scheduler.py, vllm/engine/arg_utils.py; read in
    recent vLLM sources, not in the pinned 0.29.0 tag itself)."""
    vllm_max_num_batched_tokens: int = 2048
    """SchedulerConfig.DEFAULT_MAX_NUM_BATCHED_TOKENS (chunked prefill on), same source and caveat."""
    vllm_block_tokens: int = 16
    vllm_launch_per_layer_eager_s: float = 6.0e-5
    """Kernel launches per layer per decode step without CUDA graphs (enforce_eager): no published rows."""
    vllm_launch_per_layer_graph_s: float = 5.0e-6
    """Same with CUDA graphs replayed: no published rows."""
    vllm_step_overhead_s: float = 2.0e-3
    """Scheduler, sampler and detokeniser work per engine step: no published rows."""
    vllm_nontorch_bytes: float = 1.5e9
    """Non-torch memory vLLM's profiler subtracts (CUDA context, NCCL, cuBLAS): no published rows."""
    vllm_graph_bytes: float = 1.0e9
    """CUDA graphs captured without enforce_eager; they stay through sleep level 1: no published rows. Counted
    inside gpu_memory_utilization (taken from the KV budget), as the pinned vLLM 0.29.0 does by default:
    VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1 in vllm/envs.py, "default since v0.21.0" in
    vllm/v1/worker/gpu_worker.py; older vLLM captured them on top of the budget."""
    vllm_activation_tokens: int = 2048
    """Tokens of the profiling run whose activations the KV budget leaves out (max_num_batched_tokens)."""
    process_context_bytes: float = 6.0e8
    """CUDA context of each extra Ray process on a GPU (colocated roles are separate processes): no published rows."""
    ray_call_s: float = 1.0e-3
    """Fixed cost per parameter tensor during weight sync: rank 0's update_weight.remote to every engine and the
    ray.get that waits for them (ppo_actor.py:426-437), with CUDA IPC also an all_gather_object of the handles
    and a barrier (:446-466): no published rows (a prior; the paper's rows cannot separate it from the bytes)."""
    weight_sync_bytes_per_s: float = 2.25e9
    """Bytes per second of the per-tensor NCCL broadcast path, end to end: rank 0 broadcasts each whole tensor
    to every vLLM worker (ppo_actor.py:436; each TP worker receives the full shape, vllm_worker_wrap.py
    update_weight), which allocates it and runs vLLM's load_weights before the next tensor. FITTED to the
    OpenRLHF paper's Table 5 weight-sync seconds (3 rows, A800, 2024 code): far below any fabric's link rate,
    so the link never binds on this evidence."""
    train_time_factor: float = 0.63
    """Scale on the DeepSpeed training terms (compute, ZeRO communication, Adam step) of the actor and critic.
    FITTED to the paper's Table 5 training seconds (3 rows, all with Adam offload): the rows' compute and
    CPU-Adam shares are about equal in each, so one factor is all they can fit, not the two rates apart."""
    checkpoint_write_bytes_per_s: float = 2.0e9
    """Bytes per second one node writes a checkpoint to its storage (DeepSpeed save_checkpoint from every rank;
    the HF copy from rank 0): no published rows (a prior; shared file systems vary by orders of magnitude)."""
    zero3_max_live_elements: float = 1.0e9
    """stage3_max_live_parameters as OpenRLHF leaves it: "auto", which DeepSpeed's config drops
    (config_utils.py), so DeepSpeed's default 1e9 applies (DeepSpeed-Chat sets 3e7)."""
    empty_cache_s: float = 0.3
    """gc + torch.cuda.empty_cache after each colocated experience forward (as DEFAULT_CONSTANTS)."""


DEFAULT_OPENRLHF_CONSTANTS = OpenRLHFConstants()


def backing() -> str:
    """What backs the OpenRLHF constants, said in every estimate's interval."""
    from ._spec import published_sources

    held = [f"{s.rows} rows of {s.source} (not in the fit: {s.why_not})" for s in published_sources() if not s.in_fit]
    used = [s for s in published_sources() if s.in_fit]
    fitted = "; ".join(f"{', '.join(s.fits)} fitted to {s.rows} rows of {s.source}" for s in used)
    return (
        (f"{fitted}; " if fitted else "")
        + "every other OpenRLHF constant is a prior (no published rows); no throughput interval"
        + (f"; read but left out: {'; '.join(held)}" if held else "")
    )
