"""Constants that only OpenRLHF's iteration needs (vLLM, Ray, sleep/wake), each with what backs it.

None is fitted: no OpenRLHF or vLLM rollout row has been measured by dstune, and the published rows
read so far (OpenRLHF's 2024 README table) state too few settings to fit one. Every figure here
therefore says "no published rows" in an estimate's interval basis.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class OpenRLHFConstants:
    vllm_max_num_seqs: int = 128
    """Running sequences per engine step: vLLM's SchedulerConfig default for an engine built without a usage
    context (OpenRLHF builds AsyncLLMEngine.from_engine_args and sets no max_num_seqs); reported for vLLM
    0.26, not re-read for the pinned 0.29.0."""
    vllm_max_num_batched_tokens: int = 2048
    """Tokens per engine step with chunked prefill, same source and caveat as vllm_max_num_seqs."""
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
    """CUDA graphs captured without enforce_eager; they stay through sleep level 1: no published rows."""
    vllm_activation_tokens: int = 2048
    """Tokens of the profiling run whose activations the KV budget leaves out (max_num_batched_tokens)."""
    process_context_bytes: float = 6.0e8
    """CUDA context of each extra Ray process on a GPU (colocated roles are separate processes): no published rows."""
    ray_call_s: float = 1.0e-3
    """One blocking Ray call per parameter during weight sync: no published rows."""
    zero3_max_live_elements: float = 1.0e9
    """stage3_max_live_parameters as OpenRLHF leaves it: "auto", which DeepSpeed's config drops
    (config_utils.py), so DeepSpeed's default 1e9 applies (DeepSpeed-Chat sets 3e7)."""
    empty_cache_s: float = 0.3
    """gc + torch.cuda.empty_cache after each colocated experience forward (as DEFAULT_CONSTANTS)."""


DEFAULT_OPENRLHF_CONSTANTS = OpenRLHFConstants()
BACKING = "no published rows: OpenRLHF constants are priors (dstune/costmodel/_openrlhf_constants.py)"
