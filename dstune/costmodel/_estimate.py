"""Score candidate plans: memory by component, time by phase, throughput, MFU, feasibility.

`estimate_table` takes a column table (knob name -> numpy array, one entry per
candidate) so a whole search space is scored in one vectorised pass;
`estimate` scores one Plan through the same code. Each step's terms live in its own module
(_sft.py, _ppo.py, _dpo.py) on the shared ones of a trained model (_trained.py); the GPU peak is the
largest, over the phases of a step, of the steady states plus what that phase holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ..catalog import ClusterSpec, ModelSpec
from ..errors import UserInputError
from ..plan import Plan, step_strategy
from . import _time as tm
from ._constants import DEFAULT_CONSTANTS, CostConstants
from ._inputs import Columns, CostInputs, per_value
from ._ppo import score_ppo
from ._sft import score_rm, score_sft
from ._trained import GPU_COMPONENTS, trainable

TRANSIENT_COMPONENTS = ("grads", "activations", "kv_cache", "inference_weights", "inference_workspace")
"""For a cost function that does not say what it churns (`_trained.peak`'s `churned`): the components taken to
be allocated and freed within a step, on which the caching allocator's fragmentation is charged."""

__all__ = [
    "GPU_COMPONENTS",
    "CostInputs",
    "estimate_table",
    "plans_to_columns",
    "score_ppo",
    "score_rm",
    "score_sft",
    "trainable",
]
"""score_* are named here because each step's strategy names its cost function by this module's path."""


def plans_to_columns(plans: Sequence[Plan]) -> dict[str, np.ndarray]:
    """Column table of knob values from plan objects (all of one step)."""
    names = [f.name for f in dataclasses.fields(plans[0])]
    return {name: np.array([getattr(p, name) for p in plans]) for name in names}


def _peak_flops(cluster: ClusterSpec, dtype: np.ndarray) -> np.ndarray:
    def peak(d: str) -> float:
        try:
            return cluster.gpu.peak_tflops(str(d)) * 1e12
        except UserInputError:
            return float("nan")

    return per_value(dtype, peak)


def estimate_table(
    step: str,
    cols: Columns,
    model: ModelSpec,
    cluster: ClusterSpec,
    *,
    critic_model: ModelSpec | None = None,
    constants: CostConstants = DEFAULT_CONSTANTS,
    he_kernels: bool = True,
    transformers_version: str = "",
) -> dict[str, np.ndarray]:
    """Score every candidate row. Returns flat columns: mem_*, gpu_allocated_bytes (torch's max allocated: no
    CUDA context, no allocator overhead), gpu_peak_bytes, host_peak_bytes,
    time_*, step_s, samples_per_s, tokens_per_s, mfu, fits_gpu (under the card), within_headroom (under the
    card less the headroom a production pick keeps), fits_host, feasible (fits the card and the host)."""
    c = constants
    first = next(iter(cols.values()))
    n_rows = len(first)
    peak = _peak_flops(cluster, cols["dtype"])
    hw = dataclasses.replace(tm.Hardware.of(cluster, "fp16", c), peak_flops=peak)
    inputs = CostInputs(cols, model, critic_model or model, cluster, hw, c, he_kernels, transformers_version)
    raw = step_strategy(step).cost()(inputs)
    out: dict[str, np.ndarray] = {}
    memory = raw["memory"]
    for name in GPU_COMPONENTS[:-1]:
        out[f"mem_{name}"] = np.broadcast_to(np.asarray(memory.get(name, 0.0), dtype=float), (n_rows,)).copy()
    allocated = sum(out[f"mem_{name}"] for name in GPU_COMPONENTS[:-1]) + memory["buffers"]
    churned = memory["churned"] if "churned" in memory else sum(out[f"mem_{name}"] for name in TRANSIENT_COMPONENTS)
    overhead = c.memory_overhead_fraction * np.asarray(churned, dtype=float)
    out["mem_other"] = memory["buffers"] + c.cuda_context_bytes + overhead
    out["gpu_allocated_bytes"] = allocated
    out["allocator_overhead_bytes"] = overhead
    out["gpu_peak_bytes"] = allocated + c.cuda_context_bytes + overhead
    out["host_peak_bytes"] = np.asarray(raw["host_peak_bytes"], dtype=float)
    out["peak_phase"] = memory["peak_phase"]
    step_s = np.zeros(n_rows)
    for name, seconds in raw["phases"].items():
        out[f"time_{name}"] = np.asarray(seconds, dtype=float)
        step_s = step_s + out[f"time_{name}"]
    out["step_s"] = step_s
    out["samples_per_s"] = raw["samples"] / step_s
    out["tokens_per_s"] = raw["tokens"] / step_s
    out["mfu"] = raw["flops"] / (step_s * peak)
    out["fits_gpu"] = out["gpu_peak_bytes"] <= cluster.gpu.memory_bytes
    out["within_headroom"] = out["gpu_peak_bytes"] <= cluster.gpu.memory_bytes * (1.0 - c.headroom_fraction)
    out["fits_host"] = out["host_peak_bytes"] <= cluster.host_memory_per_node_bytes
    out["feasible"] = out["fits_gpu"] & out["fits_host"] & np.isfinite(peak)
    return out
