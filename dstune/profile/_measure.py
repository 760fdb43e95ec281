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
    """Accumulates synchronised seconds per phase name for the current step."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize()
            self.current[name] += time.perf_counter() - start

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


def local_memory(device: str) -> RankMemory:
    """This rank's peaks: allocator max allocated / reserved and NVML used on CUDA; host RSS always."""
    if device != "cuda":
        return RankMemory(None, None, None, host_peak_rss_bytes())
    import torch

    index = torch.cuda.current_device()
    return RankMemory(
        int(torch.cuda.max_memory_allocated(index)),
        int(torch.cuda.max_memory_reserved(index)),
        nvml_used_bytes(index),
        host_peak_rss_bytes(),
    )


def nvml_used_bytes(index: int) -> int | None:
    """Memory in use on the device as NVML sees it (all processes, context included)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        physical = int(visible.split(",")[index]) if visible and visible.split(",")[index].isdigit() else index
        handle = pynvml.nvmlDeviceGetHandleByIndex(physical)
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
        [mine.gpu_peak or 0, mine.gpu_reserved or 0, mine.nvml_used or 0], dtype=torch.float64, device=tensor_device
    )
    dist.all_reduce(peaks, op=dist.ReduceOp.MAX)
    per_node = torch.zeros(nodes, dtype=torch.float64, device=tensor_device)
    per_node[min(rank // max(1, local_world_size), nodes - 1)] = mine.host_peak
    dist.all_reduce(per_node, op=dist.ReduceOp.SUM)
    gpu_peak, reserved, nvml = (int(v) for v in peaks.tolist())
    return RankMemory(
        gpu_peak if mine.gpu_peak is not None else None,
        reserved if mine.gpu_reserved is not None else None,
        nvml if mine.nvml_used is not None else None,
        int(per_node.max().item()),
    )


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
