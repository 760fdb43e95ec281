"""The per-rank program of a trial: `python -m dstune.profile.worker --spec TRIAL_DIR/spec.json`.

Started by the deepspeed launcher (which appends `--local_rank`) or torchrun
(which sets LOCAL_RANK). It reads the spec the launcher side wrote, builds and
wraps the models as DeepSpeed-Chat does, runs the warm-up and measured steps,
and rank 0 writes `worker_result.json`. A rank that fails writes
`worker_error.rank<N>.json` (status oom or error, with the exception) and exits
nonzero, which makes the launcher end the other ranks.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._inputs import Step
    from ._measure import PhaseTimer

_MILESTONES: dict[str, float] = {}
PHASE_PEAK_CPU_NOTE = (
    "per-phase peaks on the CPU are the process RSS that DeepSpeed's CPU accelerator samples at phase ends, "
    "not allocator peaks"
)


_STAGES: list[Path] = []
"""Rank 0's stage file (dstune.profile._result.STAGES_FILE), once main knows the trial directory."""


def _mark(name: str) -> None:
    _MILESTONES[name] = time.time()


def _stage(text: str) -> None:
    """Tell the launching process how far rank 0 got; `dstune profile` shows each stage as it passes."""
    for path in _STAGES:
        try:
            with path.open("a", encoding="utf-8") as handle:
                handle.write(text + "\n")
        except OSError:
            pass


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dstune.profile.worker")
    parser.add_argument("--spec", required=True, type=Path)
    parser.add_argument("--local_rank", type=int, default=None, help="set by the deepspeed launcher")
    return parser.parse_args(argv)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _apply_memory_cap(cap_gb: float | None, device: str, notes: list[str]) -> None:
    """Per-process memory fraction on CUDA; the CPU accelerator has no allocator cap."""
    if cap_gb is None:
        return
    if device != "cuda":
        notes.append(f"--memory-cap-gb {cap_gb:g} ignored: it caps CUDA allocator memory and this run is on {device}")
        return
    import torch

    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    fraction = min(1.0, cap_gb * 2**30 / total)
    torch.cuda.set_per_process_memory_fraction(fraction)
    notes.append(f"GPU memory capped at {cap_gb:g} GiB per process ({fraction:.3f} of {total / 2**30:.1f} GiB)")


def _memoize_cpu_info() -> None:
    """py-cpuinfo answers by running a Python subprocess (~1.2 s); DeepSpeed asks it up to 3 times
    per CPU optimizer (DeepSpeedCPUAdam, the op builder's cpu_arch and simd_width). The answer
    cannot change within a process, so ask once."""
    try:
        import cpuinfo
    except ImportError:
        return
    if not hasattr(cpuinfo.get_cpu_info, "cache_info"):
        cpuinfo.get_cpu_info = functools.lru_cache(maxsize=1)(cpuinfo.get_cpu_info)


def _setup_device(spec: dict[str, Any], notes: list[str]) -> tuple[str, Any]:
    """Pin the rank's device, apply the memory cap, start the process group."""
    import deepspeed
    import torch
    from deepspeed.accelerator import get_accelerator

    _mark("imported")
    _stage("ranks started (torch and DeepSpeed imported); starting the process group")
    device_name = get_accelerator().device_name()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_name == "cuda":
        torch.cuda.set_device(local_rank)
    _apply_memory_cap(spec.get("memory_cap_gb"), device_name, notes)
    deepspeed.init_distributed()
    _mark("dist_initialised")
    _stage("process group up; building the models and DeepSpeed engines")
    device = torch.device(device_name, local_rank) if device_name == "cuda" else torch.device("cpu")
    return device_name, device


def _build_step(spec: dict[str, Any], device: Any, world: int) -> Step:
    """The stage's models and engines, built and wrapped as DeepSpeed-Chat does."""
    from ._inputs import TrialInputs

    inputs = TrialInputs(
        step=spec["step"],
        plan=spec["plan"],
        model=spec["model"],
        critic_model=spec.get("critic_model"),
        ds_configs=spec["ds_configs"],
        device=device,
        world_size=world,
    )
    from ..plan import step_strategy

    return step_strategy(inputs.step).worker()(inputs)


def skipped_updates(step: Any) -> dict[str, int]:
    """Optimizer updates each training engine has skipped so far (fp16 loss-scale overflow), by role.
    A training engine is one that has stepped (DeepSpeed counts global_steps, skipped or not); eval
    engines can carry a ZeRO/bf16 optimizer wrapper and never step."""
    found = {}
    for role, value in vars(step).items():
        if hasattr(value, "skipped_steps") and getattr(value, "global_steps", 0) > 0:
            found[role] = int(value.skipped_steps)
    return found


def _run_steps(step: Step, warmup: int, steps: int) -> tuple[list[dict[str, float]], list[float], PhaseTimer]:
    """Warm-up steps (discarded), then measured steps: phase seconds and wall seconds of each, and the
    timer (its per-phase peaks are the measured steps'; `skipped` the updates they skipped, by role)."""
    from ._measure import PhaseTimer

    timer = PhaseTimer()
    _stage(f"models built; warm-up ({warmup} step(s), not measured)")
    for _ in range(warmup):
        step.run(timer)
    timer.take()
    timer.reset_peaks()
    before = skipped_updates(step)
    _mark("warmup_done")
    phases: list[dict[str, float]] = []
    walls: list[float] = []
    for i in range(steps):
        _stage(f"measured step {i + 1}/{steps}" + (f" (the last took {walls[-1]:.1f} s)" if walls else ""))
        start = time.perf_counter()
        step.run(timer)
        walls.append(time.perf_counter() - start)
        phases.append(timer.take())
    _stage(f"measured steps done (the last took {walls[-1]:.1f} s); collecting memory figures")
    _mark("measured_done")
    timer.skipped = {role: n - before.get(role, 0) for role, n in skipped_updates(step).items()}
    return phases, walls, timer


def _doctor_findings(spec: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """The doctor's view of this trial's stack: every version it reports, and its HE probe for the
    trial's model family from the doctor's cache only. Probing here would build a real HE engine inside
    the trial's timeout and add to its measured peak; `dstune doctor` fills the cache. Never fails the trial."""
    from ..doctor._cache import cached_he_status
    from ..doctor._stack import installed_versions, runtime_versions

    found = {k: v for k, v in {**installed_versions(), **runtime_versions()}.items() if v is not None}
    family = spec["model"].get("family") or spec["model"].get("hf_config", {}).get("model_type")
    try:
        cached = cached_he_status(family)
    except Exception as error:  # noqa: BLE001 - a finding, not a failure
        return found, {"family": family, "policy_found": None, "reason": f"{type(error).__name__}: {error}"}
    if cached is None:
        reason = "not in the doctor's cache for this stack (run `dstune doctor` first); not probed in the trial"
        return found, {"family": family, "policy_found": None, "reason": reason, "source": "none"}
    return found, {**cached.to_json(), "source": "cache"}


def _measure(spec: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    _memoize_cpu_info()
    import torch.distributed as dist

    from ..record import Status
    from ._measure import local_memory, reduce_memory, reduce_phase_peaks, summarise, versions
    from ._result import CPU_NOTE

    device_name, device = _setup_device(spec, notes)
    world = dist.get_world_size()
    step = _build_step(spec, device, world)
    _MILESTONES.update(getattr(step, "milestones", {}))
    _mark("models_built")
    phases, walls, timer = _run_steps(step, spec["warmup"], spec["steps"])
    stack_versions, he_probe = _doctor_findings(spec)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("LOCAL_SIZE") or world)
    memory = reduce_memory(local_memory(device_name, timer.overall), device_name, local_world)
    phase_peaks = reduce_phase_peaks(timer.peaks, device_name)
    notes.extend(dict.fromkeys(step.notes))
    if device_name == "cpu":
        notes.append(f"{CPU_NOTE}; no device memory figures (see host_peak_bytes)")
        notes.append(PHASE_PEAK_CPU_NOTE)
    skipped = {role: n for role, n in timer.skipped.items() if n}
    if skipped:
        notes.append(
            "fp16 loss scaling skipped optimizer updates in the measured steps ("
            + ", ".join(f"{role} {n}" for role, n in skipped.items())
            + "): those steps were timed without their update"
        )
    return {
        "status": Status.OK.value,
        "device": device_name,
        "world_size": world,
        "phases": summarise(phases),
        "step_times": walls,
        "samples_per_step": step.samples_per_step_per_rank * world,
        "tokens_per_step": step.tokens_per_step_per_rank * world,
        "gpu_peak_bytes": memory.gpu_peak,
        "gpu_reserved_bytes": memory.gpu_reserved,
        "nvml_used_bytes": memory.nvml_used,
        "host_peak_bytes": memory.host_peak,
        "device_peak_bytes": memory.device_peak,
        "phase_peak_bytes": phase_peaks,
        "skipped_steps": timer.skipped,
        "he_kernels": step.he_kernels,
        "versions": {**stack_versions, **versions()},
        "he_probe": he_probe,
        "notes": notes,
    }


def _failure(error: BaseException) -> dict[str, Any]:
    import torch

    from ..record import Status

    oom_types: tuple[type, ...] = (torch.OutOfMemoryError,) if hasattr(torch, "OutOfMemoryError") else ()
    status = Status.OOM if oom_types and isinstance(error, oom_types) else Status.ERROR
    return {
        "status": status.value,
        "rank": _rank(),
        "error": f"{type(error).__name__}: {error}",
        "traceback": traceback.format_exc(),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the trial; returns the exit code (0 ok, 1 failed). See `_exit` for how the process ends."""
    _mark("started")
    args = _parse(argv)
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    trial_dir = args.spec.parent
    from ._result import STAGES_FILE, WORKER_RESULT_FILE, rank_error_file, write_json_atomic

    if _rank() == 0:
        _STAGES.append(trial_dir / STAGES_FILE)

    notes: list[str] = []
    try:
        payload = _measure(spec, notes)
    except BaseException as error:  # noqa: BLE001 - every failure becomes a typed record
        failure = _failure(error)
        failure["milestones"] = _MILESTONES
        write_json_atomic(trial_dir / rank_error_file(_rank()), failure)
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    if _rank() == 0:
        payload["milestones"] = _MILESTONES
        write_json_atomic(trial_dir / WORKER_RESULT_FILE, payload)
    _shutdown()
    return 0


def _shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _exit(code: int) -> None:
    """Leave without interpreter finalization once the result is on disk.

    Tearing down torch / DeepSpeed / gloo at exit takes 3-4 s of C++ destructors
    (measured on CPU, no Python frame involved), time every trial would pay
    after its measurement is already written; stdio is flushed first.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit(main())
