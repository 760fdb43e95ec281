"""Turn what a finished trial left behind (worker files, exit code) into a TrialResult.

The status comes from the files the worker wrote and the exit code, never from
the log's text; the log's tail is attached to failures for the reader.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..record import Status
from ._process import Finished
from ._result import CPU_NOTE, LOG_FILE, WORKER_RESULT_FILE, TrialResult

if TYPE_CHECKING:
    from ..catalog import ClusterSpec
    from ..costmodel import Estimate
    from ..plan import Plan

LOG_TAIL_LINES = 40


def log_tail(trial_dir: Path, lines: int = LOG_TAIL_LINES) -> str:
    path = trial_dir / LOG_FILE
    if not path.exists():
        return ""
    text = path.read_bytes()[-64 * 1024 :].decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _rank_failures(trial_dir: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(trial_dir.glob("worker_error.rank*.json"), key=lambda p: p.stat().st_mtime):
        data = _read(path)
        if data is not None:
            found.append(data)
    return found


def _exit_text(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def useful_flops_per_gpu(predicted: Estimate, cluster: ClusterSpec, dtype: str) -> float:
    """Model FLOPs one rank does per step, by the cost model's formulas (recovered from its MFU)."""
    return predicted.mfu * predicted.step_s * cluster.gpu.peak_tflops(dtype) * 1e12


def collect(
    trial_dir: Path,
    *,
    finished: Finished,
    launched_at: float,
    device: str,
    world_size: int,
    timeout_s: float,
    plan: Plan,
    cluster: ClusterSpec,
    predicted: Estimate | None,
) -> TrialResult:
    base: dict[str, Any] = {
        "world_size": world_size,
        "device": device,
        "wall_s": finished.wall_s,
        "trial_dir": str(trial_dir),
    }
    notes = [CPU_NOTE] if device == "cpu" else []
    failures = _rank_failures(trial_dir)
    worker = _read(trial_dir / WORKER_RESULT_FILE)
    if finished.timed_out:
        return TrialResult(
            status=Status.TIMEOUT,
            **base,
            log_tail=log_tail(trial_dir),
            notes=tuple(notes),
            error=f"ran past its {timeout_s:g} s limit; process group {finished.pgid} was ended",
        )
    if failures:
        oom = [f for f in failures if f.get("status") == Status.OOM]
        first = (oom or failures)[0]
        return TrialResult(
            status=Status.OOM if oom else Status.ERROR,
            **base,
            error=f"rank {first.get('rank')}: {first.get('error')}",
            notes=tuple(notes),
            log_tail=log_tail(trial_dir),
            startup=_startup(first, launched_at),
        )
    if worker is None or finished.returncode != 0:
        why = _exit_text(finished.returncode)
        detail = "without a result file" if worker is None else "after rank 0 wrote its result"
        return TrialResult(
            status=Status.CRASHED,
            **base,
            error=f"processes ended ({why}) {detail}",
            notes=tuple(notes),
            log_tail=log_tail(trial_dir),
        )
    return _ok(worker, base, launched_at, plan, cluster, predicted)


def _startup(worker: dict[str, Any], launched_at: float) -> dict[str, float]:
    return {name: at - launched_at for name, at in (worker.get("milestones") or {}).items()}


def _ok(
    worker: dict[str, Any],
    base: dict[str, Any],
    launched_at: float,
    plan: Plan,
    cluster: ClusterSpec,
    predicted: Estimate | None,
) -> TrialResult:
    step_times = tuple(worker["step_times"])
    step_s = sum(step_times) / len(step_times)
    startup = _startup(worker, launched_at)
    tflops = mfu = None
    if predicted is not None and step_s > 0:
        flops = useful_flops_per_gpu(predicted, cluster, plan.dtype)
        tflops = flops / step_s / 1e12
        if worker["device"] == "cuda":
            mfu = tflops / cluster.gpu.peak_tflops(plan.dtype)
    return TrialResult(
        status=Status.OK,
        **{**base, "device": worker["device"], "world_size": worker["world_size"]},
        phases=worker["phases"],
        step_s=step_s,
        samples_per_s=worker["samples_per_step"] / step_s,
        tokens_per_s=worker["tokens_per_step"] / step_s,
        tflops_per_gpu=tflops,
        mfu=mfu,
        gpu_peak_bytes=worker["gpu_peak_bytes"],
        gpu_reserved_bytes=worker["gpu_reserved_bytes"],
        nvml_used_bytes=worker["nvml_used_bytes"],
        host_peak_bytes=worker["host_peak_bytes"],
        device_peak_bytes=worker.get("device_peak_bytes"),
        phase_peak_bytes=worker.get("phase_peak_bytes", {}),
        skipped_steps=worker.get("skipped_steps", {}),
        samples_per_step=worker["samples_per_step"],
        tokens_per_step=worker["tokens_per_step"],
        he_kernels=worker["he_kernels"],
        versions=worker["versions"],
        startup_s=startup.get("warmup_done"),
        notes=tuple(worker["notes"]),
        startup=startup,
        step_times=step_times,
        he_probe=worker.get("he_probe", {}),
    )
