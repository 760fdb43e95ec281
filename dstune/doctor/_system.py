"""This machine as offload and the launcher see it: GPUs and their links (NVML), host memory,
the pinned-memory limit and /dev/shm."""

from __future__ import annotations

import os
import resource
import shutil
from dataclasses import dataclass
from typing import Any

_TOPOLOGY = {
    0: "same board",
    10: "PCIe switch",
    20: "PCIe switches",
    30: "PCIe host bridge",
    40: "NUMA node",
    50: "across sockets (SMP)",
}
"""NVML's nvmlGpuTopologyLevel_t: the closest common ancestor of two GPUs."""


@dataclass(frozen=True, kw_only=True)
class Gpu:
    index: int
    name: str
    memory_bytes: int


@dataclass(frozen=True, kw_only=True)
class GpuLink:
    a: int
    b: int
    kind: str
    """"NVLink" or "PCIe"."""
    path: str
    """NVML topology: where the two GPUs meet."""


@dataclass(frozen=True, kw_only=True)
class Host:
    memory_bytes: int
    memlock_bytes: int | None
    """RLIMIT_MEMLOCK soft limit; None = unlimited (pinned host buffers for offload)."""
    shm_bytes: int | None
    """/dev/shm size; None when absent."""
    cpus: int


def _nvml_gpus() -> tuple[list[Gpu], list[GpuLink], str | None]:
    try:
        import pynvml
    except ImportError:
        return [], [], "pynvml not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except Exception as error:  # noqa: BLE001 - no driver: no GPUs
        return [], [], f"NVML unavailable ({type(error).__name__})"
    try:
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        gpus = []
        for i, h in enumerate(handles):
            name = pynvml.nvmlDeviceGetName(h)
            gpus.append(
                Gpu(
                    index=i,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    memory_bytes=int(pynvml.nvmlDeviceGetMemoryInfo(h).total),
                )
            )
        links = [
            _link(pynvml, i, j, handles[i], handles[j]) for i in range(len(handles)) for j in range(i + 1, len(handles))
        ]
        return gpus, links, None
    finally:
        pynvml.nvmlShutdown()


def _link(pynvml: Any, i: int, j: int, a: Any, b: Any) -> GpuLink:
    try:
        nvlink = pynvml.nvmlDeviceGetP2PStatus(a, b, pynvml.NVML_P2P_CAPS_INDEX_NVLINK) == pynvml.NVML_P2P_STATUS_OK
    except Exception:  # noqa: BLE001 - older drivers lack the query
        nvlink = False
    try:
        path = _TOPOLOGY.get(int(pynvml.nvmlDeviceGetTopologyCommonAncestor(a, b)), "unknown")
    except Exception:  # noqa: BLE001
        path = "unknown"
    return GpuLink(a=i, b=j, kind="NVLink" if nvlink else "PCIe", path=path)


def detect_gpus() -> tuple[list[Gpu], list[GpuLink], str | None]:
    """GPUs, the link of every pair, and why there are none (None when NVML answered)."""
    return _nvml_gpus()


def detect_host() -> Host:
    import psutil

    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    try:
        shm = shutil.disk_usage("/dev/shm").total
    except OSError:
        shm = None
    return Host(
        memory_bytes=int(psutil.virtual_memory().total),
        memlock_bytes=None if soft == resource.RLIM_INFINITY else int(soft),
        shm_bytes=shm,
        cpus=os.cpu_count() or 1,
    )
