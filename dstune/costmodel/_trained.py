"""A trained model's terms shared by every step: trainable counts, gradient and activation phases, the
time of one training micro-batch, and the peak over a step's phases."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..catalog import ClusterSpec
from . import _memory as mem
from . import _time as tm
from ._constants import CostConstants
from ._facts import ModelFacts
from ._inputs import per_value

GPU_COMPONENTS = (
    "params",
    "grads",
    "optimizer",
    "activations",
    "kv_cache",
    "inference_weights",
    "inference_workspace",
    "other",
)
PHASE_COMPONENTS = GPU_COMPONENTS[:-1] + ("buffers",)
"""What one phase holds; `buffers` (ZeRO buckets) are reported inside `other`."""


def lora_added(f: ModelFacts, rank: np.ndarray, module_name: np.ndarray) -> np.ndarray:
    """Adapter parameters DeepSpeed-Chat's LoRA adds for each candidate."""
    return rank * per_value(module_name, lambda name: f.lora_params(str(name), 1))


@dataclass
class Trained:
    """One trained role's parameter counts and states for every candidate."""

    facts: ModelFacts
    params_all: np.ndarray
    params_trainable: np.ndarray
    weight_grad_share: np.ndarray
    """Share of the matmul weights that get a weight gradient (0 with only_optimize_lora)."""
    states: mem.States
    stage: np.ndarray
    offload: np.ndarray
    world: int

    @property
    def lora(self) -> np.ndarray:
        return self.params_all - self.facts.params

    def useful_flops_factor(self) -> np.ndarray:
        """Model FLOPs of one trained micro-batch, in forwards: forward + activation grads + weight grads."""
        return 2.0 + self.weight_grad_share


def trained(
    f: ModelFacts,
    rank: np.ndarray,
    module: np.ndarray,
    only_lora: np.ndarray,
    stage: np.ndarray,
    offload: np.ndarray,
    world: int,
    c: CostConstants,
) -> Trained:
    params_all = f.params + lora_added(f, rank, module)
    count, share = trainable(f, rank, module, only_lora)
    states = mem.trained_states(params_all, count, stage, offload, world, c)
    return Trained(f, params_all, count, share, states, stage, offload, world)


def trainable(
    f: ModelFacts, rank: np.ndarray, module: np.ndarray, only_lora: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(trainable parameters, share of matmul weights with a weight gradient) as DeepSpeed-Chat leaves them:
    LoRA freezes each adapted Linear's weight; only_optimize_lora freezes everything but the adapters."""
    adapted = rank > 0
    lora = lora_added(f, rank, module)
    frozen = per_value(module, lambda name: f.lora_frozen_weights(str(name)))
    count = np.where(adapted, np.where(only_lora, lora, f.params + lora - frozen), f.params)
    share = np.where(adapted, np.where(only_lora, 0.0, 1.0 - frozen / f.matmul_params), 1.0)
    return count.astype(float), share.astype(float)


def accumulated_grads(t: Trained, accumulating: np.ndarray) -> np.ndarray:
    """16-bit gradients this model keeps across the other phases of a step while it accumulates (gas > 1)."""
    held = mem.grad_accumulated_bytes(t.params_trainable, t.stage, t.offload, t.world)
    return np.where(accumulating, held, 0.0)


def train_phases(
    t: Trained, activations: np.ndarray, c: CostConstants, accumulating: np.ndarray | bool = False
) -> tuple[dict, dict]:
    """(backward, step) extras of one trained model on top of the steady states.

    Backward: activations, the ZeRO-3 gathered layers with a layer's 16-bit grad and its reduction's flat copy,
    ZeRO 1-2 reduce buckets and the 16-bit gradients (at stage 0 not all with every activation:
    `mem.growing_grads_backward`). Step: what step() holds (`mem.grad_step_bytes`). Gradients already held
    as steady while accumulating (`accumulated_grads`) are taken off, so each phase is counted once.
    """
    z3 = t.stage == 3
    accumulating = np.asarray(accumulating, dtype=bool)
    held = accumulated_grads(t, accumulating)
    gathered = np.where(z3, mem.zero3_gathered_bytes(t.facts.largest_layer_params, c), 0.0)
    overlap = c.overlap_comm >= 0.5
    grads_end = mem.grad_backward_bytes(t.params_trainable, t.stage, t.offload, t.world, accumulating, overlap)
    growing = ~accumulating & ((t.stage == 0) | ((t.stage == 1) & ~overlap))
    activations, grads = mem.growing_grads_backward(activations, grads_end, t.facts, growing)
    backward = {
        "activations": activations,
        "params": gathered,
        "grads": grads
        - held
        + np.where(z3, 2.0 * t.facts.largest_layer_params, 0.0)
        + mem.zero3_reduce_copy_bytes(t.params_trainable, t.stage, c),
        "buffers": mem.zero12_reduce_bucket_bytes(t.stage, c),
    }
    step = {"grads": mem.grad_step_bytes(t.params_trainable, t.stage, t.offload, t.world, c, t.lora) - held}
    return backward, step


def zero3_reused_bytes(t: Trained, checkpointing: np.ndarray, c: CostConstants) -> np.ndarray:
    """16-bit layers of a ZeRO-3 model still gathered when its backward starts (`mem.zero3_reused_elements`):
    SFT, RM and DPO run one forward and its backward, so the trace DeepSpeed records is the same every step."""
    kept = mem.zero3_reused_elements(t.facts, checkpointing, c)
    return np.where(t.stage == 3, mem.BYTES_16BIT * kept, 0.0)


def steady_states(states: mem.States) -> dict[str, np.ndarray]:
    return {"params": states.params, "grads": states.grads, "optimizer": states.optimizer, "buffers": states.buffers}


def peak(
    steady: dict[str, np.ndarray], phases: dict[str, dict[str, np.ndarray]], labels: dict[str, str], n_rows: int
) -> dict[str, np.ndarray]:
    """Per candidate, the phase whose extra bytes on top of the steady ones are largest (the steady bytes
    are the same in every phase), with the components at that peak, and `churned`: what the allocator's
    fragmentation (`memory_overhead_fraction`) is charged on. That is every byte a phase adds on top of the steady
    states (activations, caches, gradients, ZeRO 1-2 reduce buckets made at each backward's start, ZeRO-3's
    gathered layers and reduction copies) less the HE's raw workspace (`RAW`), plus the steady gradients made
    again every step (`CHURNED`). Weights, optimizer states, ZeRO-3's persistent buffers and the HE's fused
    copies and shared buffers are allocated once at init and are not charged."""
    names = list(phases)
    extras = np.stack([_phase_bytes(phases[p], n_rows) for p in names])
    worst = np.argmax(extras, axis=0)
    out: dict[str, np.ndarray] = {}
    for k in PHASE_COMPONENTS:
        value = np.broadcast_to(np.asarray(steady.get(k, 0.0), dtype=float), (n_rows,)).copy()
        for i, p in enumerate(names):
            if k in phases[p]:
                value += np.where(worst == i, phases[p][k], 0.0)
        out[k] = value
    raw = np.stack([np.broadcast_to(np.asarray(phases[p].get(RAW, 0.0), dtype=float), (n_rows,)) for p in names])
    at_peak = np.take_along_axis(extras - raw, worst[None, :], axis=0)[0]
    out["churned"] = at_peak + np.broadcast_to(np.asarray(steady.get(CHURNED, 0.0), dtype=float), (n_rows,))
    out["peak_phase"] = np.array([labels[p] for p in names], dtype=object)[worst]
    return out


RAW = "raw"
"""A phase's key for the part of its bytes that bypasses torch's caching allocator (already counted in its
components, so it is not summed again): the HE's inference workspace, which inference_context.h takes with
`cudaMalloc` (GenWorkSpace) and frees only on release_inference_cache."""
CHURNED = "churned"
"""A steady state's key for the part of its bytes allocated anew every step (accumulated 16-bit gradients)."""


def _phase_bytes(phase: dict[str, np.ndarray], n_rows: int) -> np.ndarray:
    return np.broadcast_to(
        sum(np.asarray(v, dtype=float) for k, v in phase.items() if k in PHASE_COMPONENTS), (n_rows,)
    )


def lora_forward_flops(t: Trained, tokens: np.ndarray) -> np.ndarray:
    """The adapters' own GEMMs: two thin matmuls per adapted Linear, 2 FLOPs per adapter weight per token
    (LinearLayer_LoRA.forward runs them beside the frozen weight; the HE fuses them only for generate())."""
    return 2.0 * tokens * t.lora


def micro_seconds(
    t: Trained,
    tokens: np.ndarray,
    seq: np.ndarray,
    checkpointing: np.ndarray,
    gas: np.ndarray,
    hw: tm.Hardware,
    c: CostConstants,
) -> tuple[np.ndarray, np.ndarray]:
    """(forward, forward+backward with exposed communication) of one training micro-batch. The adapters
    train in full (activation and weight grads: 3 forwards, 4 when recomputed)."""
    lora = lora_forward_flops(t, tokens)
    fwd = tm.compute_seconds(tm.forward_flops(t.facts, tokens, seq) + lora, tokens, t.facts, hw, c)
    base = tm.compute_seconds(tm.forward_flops(t.facts, tokens, seq), tokens, t.facts, hw, c)
    adapters = fwd - base
    total = base * (1.0 + tm.train_backward_factor(t.weight_grad_share, checkpointing))
    total = total + adapters * np.where(checkpointing, 4.0, 3.0)
    comm = tm.zero_micro_comm_seconds(t.params_all, t.params_trainable, t.stage, t.offload, t.facts.layers, gas, hw, c)
    return fwd, tm.overlapped(total, comm, c)


def host_peak(
    cluster: ClusterSpec, host_per_gpu: np.ndarray, construction_per_rank: np.ndarray, c: CostConstants
) -> np.ndarray:
    """Per node: every rank's process, plus the larger of model construction (each rank builds
    non-ZeRO-3 models whole in fp32 on the host) and the offloaded states."""
    gpn = cluster.gpus_per_node
    return gpn * (c.host_bytes_per_rank + np.maximum(construction_per_rank, host_per_gpu))
