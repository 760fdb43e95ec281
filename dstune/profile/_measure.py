"""Timing with device synchronisation, memory peaks reduced over ranks, versions."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass


def synchronize() -> None:
    from deepspeed.accelerator import get_accelerator

    get_accelerator().synchronize()


class PhaseTimer:
    """Accumulates synchronised seconds per phase name for the current step, and each phase's memory peak.

    The peak is the accelerator's max_memory_allocated, reset as the phase starts: torch's allocator peak
    on CUDA; on DeepSpeed's CPU accelerator the process RSS it samples when asked (at phase ends), not a
    true peak. `overall` keeps the largest figure seen, before any reset (model construction included)."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self.peaks: dict[str, int] = {}
        self.overall = 0
        self.skipped: dict[str, int] = {}
        """Optimizer updates skipped in the measured steps, by role (set by the worker)."""

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        from deepspeed.accelerator import get_accelerator

        accelerator = get_accelerator()
        synchronize()
        self.overall = max(self.overall, int(accelerator.max_memory_allocated()))
        accelerator.reset_peak_memory_stats()
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize()
            self.current[name] += time.perf_counter() - start
            peak = int(accelerator.max_memory_allocated())
            self.peaks[name] = max(self.peaks.get(name, 0), peak)
            self.overall = max(self.overall, peak)

    def reset_peaks(self) -> None:
        """Forget the per-phase peaks (after warm-up: the measured steps' own peaks are wanted)."""
        self.peaks = {}

    def take(self) -> dict[str, float]:
        done = dict(self.current)
        self.current = defaultdict(float)
        return done


def host_peak_rss_bytes() -> int:
    """This process's peak resident set size (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if platform.system() == "Darwin" else peak * 1024)


@dataclass(frozen=True)
class RankMemory:
    gpu_peak: int | None
    gpu_reserved: int | None
    nvml_used: int | None
    host_peak: int
    device_peak: int | None = None
    """The device's own figure at the peak: the allocator's peak reserved plus what NVML sees outside the
    allocator (CUDA context, cudaMalloc'd workspaces such as the HE's), compared with the device prediction."""


def local_memory(device: str, seen_peak: int = 0) -> RankMemory:
    """This rank's peaks: allocator max allocated / reserved and NVML used on CUDA; host RSS always.
    `seen_peak` is the largest allocator figure read before a per-phase reset (PhaseTimer.overall)."""
    if device != "cuda":
        return RankMemory(None, None, None, host_peak_rss_bytes())
    import torch

    index = torch.cuda.current_device()
    reserved = int(torch.cuda.max_memory_reserved(index))
    used = nvml_used_bytes(index)
    outside = used - int(torch.cuda.memory_reserved(index)) if used is not None else None
    return RankMemory(
        max(seen_peak, int(torch.cuda.max_memory_allocated(index))),
        reserved,
        used,
        host_peak_rss_bytes(),
        reserved + outside if outside is not None else None,
    )


def nvml_used_bytes(index: int) -> int | None:
    """Memory in use on the device as NVML sees it (all processes, context included). torch maps its
    index to NVML's itself (CUDA_VISIBLE_DEVICES by number, UUID or MIG); a plain number is the fallback."""
    import torch

    reader = getattr(torch.cuda, "device_memory_used", None)
    if reader is not None:
        try:
            return int(reader(index))
        except Exception:  # noqa: BLE001 - no NVML in this torch build: map by hand below
            pass
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        entry = visible.split(",")[index].strip() if visible else str(index)
        if not entry.isdigit():
            return None  # a UUID or MIG name NVML's index cannot take: no figure rather than another GPU's
        handle = pynvml.nvmlDeviceGetHandleByIndex(int(entry))
        return int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
    except (pynvml.NVMLError, OSError, ValueError, IndexError):
        return None


def reduce_memory(mine: RankMemory, device: str, local_world_size: int) -> RankMemory:
    """Max over ranks for device figures; host RSS summed per node, then the largest node."""
    import torch
    import torch.distributed as dist

    world = dist.get_world_size()
    rank = dist.get_rank()
    nodes = max(1, world // max(1, local_world_size))
    tensor_device = torch.device("cuda", torch.cuda.current_device()) if device == "cuda" else torch.device("cpu")
    peaks = torch.tensor(
        [mine.gpu_peak or 0, mine.gpu_reserved or 0, mine.nvml_used or 0, mine.device_peak or 0],
        dtype=torch.float64,
        device=tensor_device,
    )
    dist.all_reduce(peaks, op=dist.ReduceOp.MAX)
    per_node = torch.zeros(nodes, dtype=torch.float64, device=tensor_device)
    per_node[min(rank // max(1, local_world_size), nodes - 1)] = mine.host_peak
    dist.all_reduce(per_node, op=dist.ReduceOp.SUM)
    gpu_peak, reserved, nvml, device_peak = (int(v) for v in peaks.tolist())
    return RankMemory(
        gpu_peak if mine.gpu_peak is not None else None,
        reserved if mine.gpu_reserved is not None else None,
        nvml if mine.nvml_used is not None else None,
        int(per_node.max().item()),
        device_peak if mine.device_peak is not None else None,
    )


def reduce_phase_peaks(peaks: dict[str, int], device: str) -> dict[str, int]:
    """Each phase's peak, max over ranks (every rank runs the same phases in the same order)."""
    import torch
    import torch.distributed as dist

    names = sorted(peaks)
    tensor_device = torch.device("cuda", torch.cuda.current_device()) if device == "cuda" else torch.device("cpu")
    values = torch.tensor([peaks[n] for n in names] or [0], dtype=torch.float64, device=tensor_device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return {name: int(v) for name, v in zip(names, values.tolist())}


def versions() -> dict[str, str]:
    """Versions that change what a measurement means."""
    import deepspeed
    import torch
    import transformers

    from .. import __version__

    found = {
        "dstune": __version__,
        "deepspeed": deepspeed.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        found["cuda"] = str(torch.version.cuda)
        found["gpu"] = torch.cuda.get_device_name(0)
    return found


def summarise(steps: list[dict[str, float]]) -> dict[str, float]:
    """Mean seconds per phase over the measured steps."""
    names: list[str] = []
    for step in steps:
        names.extend(n for n in step if n not in names)
    return {name: sum(step.get(name, 0.0) for step in steps) / len(steps) for name in names}
