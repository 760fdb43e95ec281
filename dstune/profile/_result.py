"""The typed record of one profiling trial, and its JSON form (no pickles)."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..record import Status, throughput_interval

if TYPE_CHECKING:
    from ..costmodel import Estimate

RESULT_FILE = "result.json"
COMMAND_FILE = "cmd.json"
LOG_FILE = "log.txt"
SPEC_FILE = "spec.json"
CPU_NOTE = "measured on CPU (DS_ACCELERATOR=cpu): timings check the code path, not GPU performance"
STAGES_FILE = "stages.txt"
"""Rank 0 appends one line per stage it passes (process group up, models built, each measured step)."""
WORKER_RESULT_FILE = "worker_result.json"
"""Written by rank 0 of the worker when every measured step finished."""


def rank_error_file(rank: int) -> str:
    """Written by a rank that caught an exception, before it exits nonzero."""
    return f"worker_error.rank{rank}.json"


@dataclass(frozen=True, kw_only=True)
class TrialResult:
    """Measurements of one plan on real DeepSpeed; `phases` are seconds per measured step (mean)."""

    status: Status
    """How the trial ended (ok, oom, timeout, error or crashed); only ok carries measurements."""
    world_size: int
    device: str
    """"cuda" or "cpu" (DeepSpeed's accelerator name)."""
    phases: dict[str, float] = field(default_factory=dict)
    """PPO: generation, experience, actor_train, critic_train. SFT/RM: forward, backward, step."""
    step_s: float | None = None
    samples_per_s: float | None = None
    tokens_per_s: float | None = None
    tflops_per_gpu: float | None = None
    """Achieved model FLOP/s per rank, counted with the cost model's FLOP formulas."""
    mfu: float | None = None
    """tflops_per_gpu / the GPU's dense peak for the plan's dtype; None on CPU."""
    gpu_peak_bytes: int | None = None
    """Max over ranks of the accelerator's max_memory_allocated (construction included)."""
    gpu_reserved_bytes: int | None = None
    """Max over ranks of the allocator's max_memory_reserved (cached blocks included)."""
    nvml_used_bytes: int | None = None
    """Max over ranks of NVML's used memory after the measured steps (all processes, CUDA context included)."""
    host_peak_bytes: int | None = None
    """Peak RSS summed over the ranks of one node (the largest node)."""
    device_peak_bytes: int | None = None
    """CUDA: the allocator's peak reserved plus what NVML sees outside it (context, raw cudaMalloc), max over
    ranks: the figure to set against the prediction's gpu_peak_bytes (gpu_peak_bytes is the allocator's)."""
    phase_peak_bytes: dict[str, int] = field(default_factory=dict)
    """Each phase's peak over the measured steps, max over ranks: allocator peak on CUDA, sampled RSS on CPU."""
    skipped_steps: dict[str, int] = field(default_factory=dict)
    """Optimizer updates each training engine skipped in the measured steps (fp16 loss-scale overflow)."""
    samples_per_step: int = 0
    tokens_per_step: int = 0
    he_kernels: bool | None = None
    """Hybrid Engine inference kernels really ran generation; None when HE is off or the step is not PPO."""
    versions: dict[str, str] = field(default_factory=dict)
    """Every version `dstune doctor` reports (python, torch, torch_cuda, nccl, deepspeed, transformers, ...)."""
    he_probe: dict[str, Any] = field(default_factory=dict)
    """The doctor's HE probe for the trial's model family (kernels, layer_class, policy, reason, source):
    what DeepSpeed's policy lookup promises, beside `he_kernels`, what the trial saw."""
    log_tail: str | None = None
    error: str | None = None
    startup_s: float | None = None
    """Seconds from launch to the start of the first measured step."""
    wall_s: float = 0.0
    trial_dir: str = ""
    notes: tuple[str, ...] = ()
    """Plain-language facts about how the trial ran (CPU run, HE fallback, ignored memory cap)."""
    startup: dict[str, float] = field(default_factory=dict)
    """Seconds from launch to each start-up milestone of rank 0 (imports, dist init, models built, ...)."""
    step_times: tuple[float, ...] = ()
    """Wall time of every measured step, for variance."""

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def samples_per_s_interval(self) -> list[float] | None:
        """90% t-interval of samples/s over the measured steps (dstune.record.throughput_interval)."""
        found = throughput_interval(self.samples_per_s, self.step_times) if self.samples_per_s else None
        return list(found) if found else None

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (the on-disk form of result.json)."""
        data = dataclasses.asdict(self)
        data["status"] = self.status.value
        data["notes"] = list(self.notes)
        data["step_times"] = list(self.step_times)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["status"] = Status(values["status"])
        values["notes"] = tuple(values.get("notes", ()))
        values["step_times"] = tuple(values.get("step_times", ()))
        return cls(**values)

    @classmethod
    def from_json(cls, text: str | dict[str, Any]) -> TrialResult:
        return cls.from_dict(json.loads(text) if isinstance(text, str) else text)

    def to_json(self, predicted: Estimate | None = None) -> dict[str, Any]:
        """The `dstune profile --json` object: the keys of `dstune estimate --json`, measured."""
        gpu: dict[str, int] = {}
        for name, value in (
            ("max_allocated", self.gpu_peak_bytes),
            ("reserved", self.gpu_reserved_bytes),
            ("nvml_used", self.nvml_used_bytes),
        ):
            if value is not None:
                gpu[name] = int(value)
        payload: dict[str, Any] = {
            "status": self.status.value,
            "world_size": self.world_size,
            "device": self.device,
            "memory": {
                "gpu_peak_bytes": self.gpu_peak_bytes,
                "device_peak_bytes": self.device_peak_bytes,
                "host_peak_bytes": self.host_peak_bytes,
                "phase_peak_bytes": dict(self.phase_peak_bytes),
                "gpu": gpu,
            },
            "time": {
                "step_s": self.step_s,
                "phases": dict(self.phases),
                "startup_s": self.startup_s,
                "wall_s": self.wall_s,
            },
            "throughput": {
                "samples_per_s": self.samples_per_s,
                "samples_per_s_interval": self.samples_per_s_interval,
                "tokens_per_s": self.tokens_per_s,
                "samples_per_step": self.samples_per_step,
                "tokens_per_step": self.tokens_per_step,
                "tflops_per_gpu": self.tflops_per_gpu,
            },
            "mfu": self.mfu,
            "he_kernels": self.he_kernels,
            "skipped_steps": dict(self.skipped_steps),
            "versions": dict(self.versions),
            "he_probe": dict(self.he_probe),
            "notes": list(self.notes),
            "trial_dir": self.trial_dir,
            "predicted": predicted.to_json() if predicted is not None else None,
        }
        if not self.ok:
            payload["error"] = self.error
            payload["log_tail"] = self.log_tail
        return payload


def write_json_atomic(path: Path, payload: dict[str, Any] | list[Any]) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_result(trial_dir: Path) -> TrialResult:
    """Load a finished trial's result.json."""
    return TrialResult.from_json((Path(trial_dir) / RESULT_FILE).read_text(encoding="utf-8"))
