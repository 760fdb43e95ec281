"""GPUs and links via NVML (a stand-in NVML here: no GPU on the test machines), host limits."""

from __future__ import annotations

import sys
import types

import pytest

from dstune.doctor._report import _gpu_findings, _host_findings
from dstune.doctor._system import Host, detect_gpus, detect_host


def _fake_nvml(nvlinked: set[frozenset[int]]) -> types.ModuleType:
    nvml = types.ModuleType("pynvml")
    nvml.NVML_P2P_CAPS_INDEX_NVLINK, nvml.NVML_P2P_STATUS_OK = 2, 0
    nvml.nvmlInit = nvml.nvmlShutdown = lambda: None
    nvml.nvmlDeviceGetCount = lambda: 3
    nvml.nvmlDeviceGetHandleByIndex = lambda i: i
    nvml.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=80 * 2**30)
    nvml.nvmlDeviceGetP2PStatus = lambda a, b, cap: 0 if frozenset((a, b)) in nvlinked else 4
    nvml.nvmlDeviceGetTopologyCommonAncestor = lambda a, b: 10 if frozenset((a, b)) in nvlinked else 50
    return nvml


def test_links_are_nvlink_or_pcie_per_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml({frozenset((0, 1))}))
    gpus, links, note = detect_gpus()
    assert note is None and [g.name for g in gpus] == ["NVIDIA H100 80GB HBM3"] * 3
    assert [(link.a, link.b, link.kind) for link in links] == [(0, 1, "NVLink"), (0, 2, "PCIe"), (1, 2, "PCIe")]
    assert links[1].path == "across sockets (SMP)"
    findings = _gpu_findings(tuple(gpus), tuple(links), note)
    assert "3 x NVIDIA H100" in findings[0].consequence and findings[1].level == "warn"


def test_host_limits_give_consequences() -> None:
    host = detect_host()
    assert host.memory_bytes > 0 and host.cpus >= 1
    small = Host(memory_bytes=64 * 2**30, memlock_bytes=8 * 2**20, shm_bytes=64 * 2**20, cpus=8)
    text = " ".join(f.consequence for f in _host_findings(small))
    assert "ulimit -l unlimited" in text and "--shm-size" in text
    roomy = Host(memory_bytes=64 * 2**30, memlock_bytes=None, shm_bytes=32 * 2**30, cpus=8)
    assert [f.level for f in _host_findings(roomy)] == ["info"]
