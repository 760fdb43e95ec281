"""`run_doctor()`: every check, each finding with a one-line consequence, as one typed record."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..catalog import STACK_PACKAGES, Stack
from ._cache import he_statuses, stack_key
from ._he import HeStatus
from ._known import KnownIssue, known_issues
from ._locks import find_locks
from ._ops import OpStatus, op_statuses
from ._stack import installed_versions, runtime_versions
from ._system import Gpu, GpuLink, Host, detect_gpus, detect_host

Level = Literal["ok", "info", "warn"]
_GiB = 2**30
_MEMLOCK_WARN_BYTES = 64 * _GiB
_SHM_WARN_BYTES = 1 * _GiB


class FrameworkProbe(Protocol):
    """What doctor asks of a target framework (dstune.frameworks.Framework answers it): doctor sits below the
    frameworks, so the CLI hands them in."""

    def versions(self) -> dict[str, str | None]: ...

    def doctor_findings(self, versions: dict[str, str | None]) -> list[tuple[str, str, str]]: ...


@dataclass(frozen=True, kw_only=True)
class Finding:
    topic: str
    level: Level
    consequence: str


@dataclass(frozen=True, kw_only=True)
class DoctorReport:
    versions: dict[str, str | None]
    he: tuple[HeStatus, ...]
    gpus: tuple[Gpu, ...]
    links: tuple[GpuLink, ...]
    gpu_note: str | None
    host: Host
    ops: tuple[OpStatus, ...]
    known_issues: tuple[KnownIssue, ...]
    """Issues that apply to some family on this stack, whatever the plan."""
    findings: tuple[Finding, ...]
    wall_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "versions": self.versions,
            "hybrid_engine": {s.family: s.to_json() for s in self.he},
            "gpus": [vars(g) for g in self.gpus],
            "gpu_links": [vars(link) for link in self.links],
            "gpu_note": self.gpu_note,
            "host": vars(self.host),
            "ops": [vars(o) for o in self.ops],
            "known_issues": [
                {
                    **i.to_json(),
                    "families": list(i.families) or "all",
                    "when": {c.knob: {c.op: c.value} for c in i.when},
                }
                for i in self.known_issues
            ],
            "findings": [vars(f) for f in self.findings],
            "wall_s": round(self.wall_s, 3),
        }


def _stack_issues(stack: Stack) -> tuple[KnownIssue, ...]:
    """Known issues whose stack and family conditions hold for some catalog family here."""
    from ._known import _applies

    return tuple(
        i
        for i in known_issues()
        if any(_applies(i, family, True if i.gqa else None, stack) for family in stack.he_kernels)
    )


def _host_findings(host: Host) -> list[Finding]:
    found = [
        Finding(
            topic="host memory",
            level="info",
            consequence=f"{host.memory_bytes / _GiB:.1f} GiB host memory, {host.cpus} CPUs: "
            "the ceiling for offloaded optimizer state and CPU-Adam",
        )
    ]
    if host.memlock_bytes is not None and host.memlock_bytes < _MEMLOCK_WARN_BYTES:
        found.append(
            Finding(
                topic="pinned memory",
                level="warn",
                consequence=f"locked-memory limit {host.memlock_bytes / 2**20:.0f} MiB (ulimit -l): "
                "pinned offload buffers beyond it fail or fall back to pageable "
                "copies; set 'ulimit -l unlimited' for offload",
            )
        )
    if host.shm_bytes is not None and host.shm_bytes < _SHM_WARN_BYTES:
        found.append(
            Finding(
                topic="/dev/shm",
                level="warn",
                consequence=f"/dev/shm is {host.shm_bytes / 2**20:.0f} MiB: NCCL and the launcher's "
                "workers need more; run containers with --shm-size=8g or more",
            )
        )
    return found


def _gpu_findings(gpus: tuple[Gpu, ...], links: tuple[GpuLink, ...], note: str | None) -> list[Finding]:
    if not gpus:
        return [
            Finding(
                topic="GPUs",
                level="info",
                consequence=f"no GPU found ({note}): estimates use --gpu-type; profile runs on "
                "DeepSpeed's CPU accelerator (DS_ACCELERATOR=cpu)",
            )
        ]
    kinds = sorted({link.kind for link in links})
    found = [
        Finding(
            topic="GPUs",
            level="ok",
            consequence=f"{len(gpus)} x {gpus[0].name} ({gpus[0].memory_bytes / _GiB:.0f} GiB); "
            f"links: {', '.join(kinds) or 'single GPU'}",
        )
    ]
    if "PCIe" in kinds:
        found.append(
            Finding(
                topic="GPU links",
                level="warn",
                consequence="some GPU pairs talk over PCIe only: ZeRO collectives and HE tensor "
                "parallelism run slower than the catalog's NVLink figures",
            )
        )
    return found


def _op_findings(ops: tuple[OpStatus, ...]) -> list[Finding]:
    found = []
    for op in ops:
        level: Level
        if op.prebuilt or op.jit_cached:
            level, text = "ok", "built" if op.prebuilt else "JIT-built and cached"
        elif op.compatible and op.jit_possible:
            level, text = "info", "not built yet: the first run JIT-builds it (about a minute)"
        else:
            level, text = "warn", f"cannot be built here ({op.note or 'no ninja/C++ compiler or incompatible'})"
        use = {
            "cpu_adam": "offload (DeepSpeedCPUAdam)",
            "fused_adam": "GPU training (FusedAdam)",
            "transformer_inference": "Hybrid Engine generation (its inference kernels)",
        }.get(op.name, op.name)
        found.append(Finding(topic=f"op {op.name}", level=level, consequence=f"{op.name} {text}; used by {use}"))
    return found


def _lock_findings() -> list[Finding]:
    return [
        Finding(
            topic="op lock",
            level="warn" if lock.state != "held" else "info",
            consequence=f"{lock.path}: {lock.state} torch extension lock ({lock.age_s:.0f} s old, no live builder "
            "found); every load of that op waits on it (dstune profile/search clear it)"
            if lock.state == "stale"
            else f"{lock.path}: {lock.state} torch extension lock (held by {list(lock.holders) or 'unknown'})",
        )
        for lock in find_locks()
    ]


def run_doctor(*, refresh: bool = False, frameworks: Sequence[FrameworkProbe] = ()) -> DoctorReport:
    """Everything `dstune doctor` reports; the HE probe is cached per stack (refresh re-probes)."""
    start = time.perf_counter()
    versions = {**installed_versions(), **runtime_versions()}
    for framework in frameworks:
        versions.update(framework.versions())
    he = tuple(status for _, status in he_statuses(refresh))
    gpus, links, gpu_note = detect_gpus()
    host = detect_host()
    ops = tuple(op_statuses())
    stack = Stack(
        name="local",
        requires={p: f"=={versions[p]}" for p in STACK_PACKAGES if versions.get(p)},
        he_verdicts={s.family: s.verdict for s in he},
    )
    issues = _stack_issues(stack)
    findings = [
        Finding(
            topic="stack",
            level="info",
            consequence=f"probe key {stack_key()}; Python {versions['python']}, CUDA "
            f"{versions.get('torch_cuda') or 'none (CPU build)'}",
        )
    ]
    findings += [
        Finding(
            topic=f"HE {s.family}: {s.verdict or 'unknown'}",
            level="ok" if s.verdict == "kernels" else "warn",
            consequence=s.consequence,
        )
        for s in he
    ]
    findings += (
        _gpu_findings(tuple(gpus), tuple(links), gpu_note) + _host_findings(host) + _op_findings(ops) + _lock_findings()
    )
    findings += [
        Finding(
            topic=f"known issue {i.id}", level="warn" if i.severity == "broken" else "info", consequence=i.consequence
        )
        for i in issues
    ]
    findings += [
        Finding(topic=t, level=lv, consequence=c)  # type: ignore[arg-type]
        for framework in frameworks
        for t, lv, c in framework.doctor_findings(versions)
    ]
    return DoctorReport(
        versions=versions,
        he=he,
        gpus=tuple(gpus),
        links=tuple(links),
        gpu_note=gpu_note,
        host=host,
        ops=ops,
        known_issues=issues,
        findings=tuple(findings),
        wall_s=time.perf_counter() - start,
    )
