"""The training job a plan runs: what is trained and on how much data per step.

A speedup is only meaningful between plans of one job. The job is the step, the
knobs marked `job=True` in _knobs.py (LoRA settings, ppo_epochs, sequence lengths,
dtype) and the global batch sizes; everything else (ZeRO stages, offload,
checkpointing, how the global batch is split per device, the Hybrid Engine
options) is the *plan* that runs the job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._knobs import knob_fields
from ._step import step_strategy


def job_knobs(step: str) -> tuple[str, ...]:
    """Plan fields that define what is trained (metadata `job=True`)."""
    return tuple(f.name for f in knob_fields(step) if f.metadata.get("job"))


def batch_figures(step: str) -> tuple[str, ...]:
    """The global batch sizes that define a job of this step (all GPUs together)."""
    return step_strategy(step).batch.figures


def batch_columns(step: str, cols: Mapping[str, np.ndarray], world: int) -> dict[str, np.ndarray]:
    """Global batch sizes for every candidate of a column table (see BatchShape)."""
    return step_strategy(step).batch.columns(cols, world)


@dataclass(frozen=True)
class Job:
    """What one plan trains; equal jobs train the same thing on the same data per step."""

    step: str
    trained: tuple[tuple[str, Any], ...]
    """(knob, value) for every job knob, in field order."""
    batch: tuple[tuple[str, int], ...]
    """(figure, value) for the step's global batch sizes."""

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.trained)

    @property
    def batches(self) -> dict[str, int]:
        return dict(self.batch)

    def key(self) -> str:
        return json.dumps({"step": self.step, **self.values, **self.batches}, sort_keys=True, default=str)

    def trains(self) -> str:
        """'full fine-tuning', 'actor LoRA r=8 only', 'actor LoRA r=128 + base weights'."""
        v = self.values
        roles = step_strategy(self.step).lora_roles
        parts = []
        for role in roles:
            rank = int(v.get(role.rank, 0))
            if rank > 0:
                what = "only" if v.get("only_optimize_lora") else "+ base weights"
                named = f"{role.role} " if len(roles) > 1 else ""
                parts.append(f"{named}LoRA r={rank} {what}")
        return ", ".join(parts) if parts else "full fine-tuning"

    def trains_class(self) -> str:
        """Coarse class of what is trained: full, lora-only, or lora+base."""
        v = self.values
        ranks = [int(v.get(r.rank, 0)) for r in step_strategy(self.step).lora_roles]
        if not any(ranks):
            return "full"
        return "lora-only" if v.get("only_optimize_lora") else "lora+base"

    def label(self) -> str:
        """Short human text, e.g. 'full fine-tuning, 32 prompts/iteration, 32 samples/update, 256+256 tokens, fp16'."""
        v, b = self.values, self.batches
        sizes = step_strategy(self.step).sizes_label(v, b)
        return f"{self.trains()}, {sizes}, {v['dtype']}"

    def differences(self, other: Job) -> list[str]:
        """'knob a -> b' for every job figure that differs (empty: the same job)."""
        mine, theirs = {**self.values, **self.batches}, {**other.values, **other.batches}
        return [f"{k} {theirs.get(k)} -> {mine.get(k)}" for k in mine if mine.get(k) != theirs.get(k)]


def job_of(step: str, values: Mapping[str, Any], world: int) -> Job:
    """The job of one plan (as a knob dict or plan object's fields) on `world` GPUs."""
    values = {**{f.name: f.default for f in knob_fields(step)}, **values}
    cols = {name: np.array([values[name]]) for name in values}
    batch = {k: int(v[0]) for k, v in batch_columns(step, cols, world).items()}
    return Job(
        step=step,
        trained=tuple((k, values[k]) for k in job_knobs(step)),
        batch=tuple((k, batch[k]) for k in batch_figures(step)),
    )


def job_codes(step: str, cols: Mapping[str, np.ndarray], world: int) -> tuple[np.ndarray, np.ndarray]:
    """(job id per candidate, index of one candidate per job): candidates with equal ids train one job."""
    parts = [np.unique(cols[name], return_inverse=True)[1].reshape(-1) for name in job_knobs(step)]
    parts += list(batch_columns(step, cols, world).values())
    codes = np.stack(parts, axis=1)
    _, first, inverse = np.unique(codes, axis=0, return_index=True, return_inverse=True)
    return inverse.reshape(-1), first
