"""One plan's prediction as a typed record: `estimate` scores a Plan through `estimate_table`, and
`trainable_params` counts what each trained role's optimizer updates."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..catalog import ClusterSpec, ModelSpec
from ..plan import Plan, plan_to_dict, step_strategy
from ._constants import DEFAULT_CONSTANTS, CostConstants
from ._estimate import GPU_COMPONENTS, estimate_table, plans_to_columns
from ._facts import model_facts
from ._trained import trainable


@dataclass(frozen=True)
class Estimate:
    """The cost model's prediction for one plan; `to_json` is `dstune estimate --json`."""

    step: str
    model: str
    critic_model: str | None
    gpus: int
    nodes: int
    gpu_type: str
    plan: dict[str, Any]
    feasible: bool
    reasons: tuple[str, ...]
    gpu_memory: dict[str, float]
    gpu_peak_bytes: float
    gpu_capacity_bytes: float
    host_peak_bytes: float
    host_capacity_bytes: float
    peak_phase: str
    phases: dict[str, float]
    step_s: float
    samples_per_s: float
    tokens_per_s: float
    mfu: float
    warnings: tuple[str, ...] = ()
    """Fits, but inside the headroom a production pick keeps."""
    trainable_params: dict[str, int] = dataclasses.field(default_factory=dict)
    """Per trained role, the parameters its optimizer updates (what DeepSpeed-Chat's LoRA leaves trainable)."""
    gpu_allocated_bytes: float | None = None
    """torch's max allocated at the peak: the peak less the CUDA context and the allocator's overhead."""

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "critic_model": self.critic_model,
            "gpus": self.gpus,
            "nodes": self.nodes,
            "gpu_type": self.gpu_type,
            "step": self.step,
            "plan": self.plan,
            "feasible": self.feasible,
            "infeasible_reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "memory": {
                "gpu_peak_bytes": int(self.gpu_peak_bytes),
                **({} if self.gpu_allocated_bytes is None else {"gpu_allocated_bytes": int(self.gpu_allocated_bytes)}),
                "gpu_capacity_bytes": int(self.gpu_capacity_bytes),
                "host_peak_bytes": int(self.host_peak_bytes),
                "host_capacity_bytes": int(self.host_capacity_bytes),
                "peak_phase": self.peak_phase,
                "gpu": {k: int(v) for k, v in self.gpu_memory.items()},
            },
            "time": {"step_s": self.step_s, "phases": dict(self.phases)},
            "throughput": {"samples_per_s": self.samples_per_s, "tokens_per_s": self.tokens_per_s},
            "mfu": self.mfu,
            "trainable_params": dict(self.trainable_params),
        }


def row_to_estimate(
    row: Mapping[str, Any],
    *,
    step: str,
    plan: dict[str, Any],
    model: ModelSpec,
    cluster: ClusterSpec,
    critic_model: ModelSpec | None,
    constants: CostConstants = DEFAULT_CONSTANTS,
) -> Estimate:
    """One row of `estimate_table` output as a typed Estimate."""
    reasons = []
    warnings = []
    capacity = cluster.gpu.memory_bytes
    usable = capacity * (1.0 - constants.headroom_fraction)
    if not row["fits_gpu"]:
        reasons.append(f"GPU peak {row['gpu_peak_bytes'] / 2**30:.1f} GiB > {capacity / 2**30:.1f} GiB on the card")
    elif not row["within_headroom"]:
        warnings.append(
            f"GPU peak {row['gpu_peak_bytes'] / 2**30:.1f} GiB fits the {capacity / 2**30:.1f} GiB card "
            f"but not the {constants.headroom_fraction:.0%} headroom a search pick keeps "
            f"({usable / 2**30:.1f} GiB usable)"
        )
    if not row["fits_host"]:
        reasons.append(
            f"host peak {row['host_peak_bytes'] / 2**30:.0f} GiB per node > "
            f"{cluster.host_memory_per_node_bytes / 2**30:.0f} GiB"
        )
    phase_names = step_strategy(step).phases
    return Estimate(
        step=step,
        model=model.name,
        critic_model=critic_model.name if critic_model else None,
        gpus=cluster.world_size,
        nodes=cluster.nodes,
        gpu_type=cluster.gpu.name,
        plan=plan,
        feasible=bool(row["feasible"]),
        reasons=tuple(reasons),
        warnings=tuple(warnings),
        gpu_memory={name: float(row[f"mem_{name}"]) for name in GPU_COMPONENTS},
        gpu_peak_bytes=float(row["gpu_peak_bytes"]),
        gpu_allocated_bytes=float(row["gpu_allocated_bytes"]) if "gpu_allocated_bytes" in row else None,
        gpu_capacity_bytes=float(capacity),
        host_peak_bytes=float(row["host_peak_bytes"]),
        host_capacity_bytes=float(cluster.host_memory_per_node_bytes),
        peak_phase=str(row["peak_phase"]),
        phases={name: float(row[f"time_{name}"]) for name in phase_names},
        step_s=float(row["step_s"]),
        samples_per_s=float(row["samples_per_s"]),
        tokens_per_s=float(row["tokens_per_s"]),
        mfu=float(row["mfu"]),
    )


def estimate(
    plan: Plan,
    model: ModelSpec,
    cluster: ClusterSpec,
    *,
    critic_model: ModelSpec | None = None,
    constants: CostConstants = DEFAULT_CONSTANTS,
    he_kernels: bool = True,
    transformers_version: str = "",
) -> Estimate:
    """Score one plan (rules are the caller's job: see dstune.plan.validate)."""
    cluster.gpu.peak_tflops(plan.dtype)
    step = plan.step
    uses_critic = step_strategy(step).uses_critic
    if uses_critic and critic_model is None:
        critic_model = model
    cols = plans_to_columns([plan])
    table = estimate_table(
        step,
        cols,
        model,
        cluster,
        critic_model=critic_model,
        constants=constants,
        he_kernels=he_kernels,
        transformers_version=transformers_version,
    )
    row = {k: v[0] for k, v in table.items()}
    scored = row_to_estimate(
        row,
        step=step,
        plan=plan_to_dict(plan),
        model=model,
        cluster=cluster,
        critic_model=critic_model if uses_critic else None,
        constants=constants,
    )
    return dataclasses.replace(scored, trainable_params=trainable_params(plan, model, critic_model))


def _role_head(step: str, model: str) -> str:
    """The critic and the reward model carry a value head; every other trained model an LM head."""
    return "value" if model == "critic" or step == "rm" else "lm"


def trainable_params(plan: Plan, model: ModelSpec, critic_model: ModelSpec | None = None) -> dict[str, int]:
    """Per trained role of the plan's step, the parameters left trainable (DeepSpeed-Chat's LoRA rules)."""
    out: dict[str, int] = {}
    only = np.array([bool(plan.only_optimize_lora)])
    for role in step_strategy(plan.step).lora_roles:
        spec = critic_model or model if role.model == "critic" else model
        f = model_facts(spec, _role_head(plan.step, role.model))
        rank = np.array([int(getattr(plan, role.rank))])
        module = np.array([str(getattr(plan, role.module))])
        out[role.role] = int(trainable(f, rank, module, only)[0][0])
    return out
