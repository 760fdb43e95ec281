"""GPU specs from public datasheets, and detection of the GPUs on this machine."""

from __future__ import annotations

import difflib
import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from dstune.errors import UserInputError

DEFAULT_GPU_TYPE = "A100-80G"
"""Assumed when nothing is detected: the GPU most DeepSpeed-Chat figures were published on."""

_GiB = 1024**3


@dataclass(frozen=True, kw_only=True)
class GpuSpec:
    """One GPU model and the server it usually sits in.

    Bandwidths are unidirectional, in GB/s (10^9 bytes). `intra_node_link_in_GB_per_sec`
    is what one GPU can send to its peers during a collective (NVLink: half the
    bidirectional datasheet figure). `default_inter_node_in_GB_per_sec` is the network
    bandwidth per GPU, i.e. the node's NIC total divided by its GPUs (DGX A100:
    8 x 200 Gb/s HDR -> 25 GB/s per GPU). Defaults describe a typical server and
    can be overridden per cluster.
    """

    name: str
    aliases: tuple[str, ...] = ()
    nvml_names: tuple[str, ...] = ()
    """Substrings of `nvmlDeviceGetName`, used to recognise local GPUs."""
    memory_in_GiB: float
    """Total device memory as NVML reports it, before the CUDA context takes its share."""
    bf16_dense_tflops: float | None
    """Dense tensor-core peak without sparsity; None where there are no bf16 tensor cores."""
    fp16_dense_tflops: float
    hbm_bandwidth_in_GB_per_sec: float
    intra_node_link: Literal["nvlink", "pcie"]
    intra_node_link_in_GB_per_sec: float
    host_link_in_GB_per_sec: float
    """Host <-> device copy bandwidth, what offload traffic goes through."""
    default_gpus_per_node: int
    default_host_memory_per_node_in_GiB: float
    default_inter_node_in_GB_per_sec: float
    source: str

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_in_GiB * _GiB)

    def peak_tflops(self, dtype: str) -> float:
        """Dense tensor-core peak for "bf16" / "fp16" (torch spellings accepted)."""
        key = _DTYPE_ALIASES.get(dtype.lower())
        if key == "bf16":
            if self.bf16_dense_tflops is None:
                raise UserInputError(f"{self.name} has no bf16 tensor cores; use --set dtype=fp16")
            return self.bf16_dense_tflops
        if key == "fp16":
            return self.fp16_dense_tflops
        raise UserInputError(f"unknown dtype {dtype!r}; choose bf16 or fp16")


_DTYPE_ALIASES = {
    "bf16": "bf16",
    "bfloat16": "bf16",
    "torch.bfloat16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "torch.float16": "fp16",
}


@functools.lru_cache(maxsize=1)
def _catalog() -> tuple[GpuSpec, ...]:
    text = (resources.files("dstune.catalog") / "data" / "gpus.json").read_text(encoding="utf-8")
    specs = []
    for entry in json.loads(text):
        entry["aliases"] = tuple(entry.get("aliases", ()))
        entry["nvml_names"] = tuple(entry.get("nvml_names", ()))
        specs.append(GpuSpec(**entry))
    return tuple(specs)


def list_gpus() -> list[GpuSpec]:
    """Catalog GPUs in file order (roughly by vendor generation)."""
    return list(_catalog())


def load_gpu(name: str) -> GpuSpec:
    """Find a GPU by name or alias, case-insensitively."""
    wanted = name.strip().lower()
    for spec in _catalog():
        if wanted == spec.name.lower() or wanted in (a.lower() for a in spec.aliases):
            return spec
    prefixed = [spec.name for spec in _catalog() if spec.name.lower().startswith(wanted)] if wanted else []
    if len(prefixed) > 1:
        raise UserInputError(f"ambiguous GPU type '{name}': pass one of {', '.join(prefixed)}")
    raise UserInputError(f"unknown GPU type '{name}'; {_suggestions(name)} (see 'dstune gpus')")


def match_nvml_name(nvml_name: str) -> GpuSpec | None:
    """The catalog GPU whose NVML substring matches best (longest match wins)."""
    lowered = nvml_name.lower()
    best: tuple[int, GpuSpec] | None = None
    for spec in _catalog():
        for pattern in spec.nvml_names:
            if pattern.lower() in lowered and (best is None or len(pattern) > best[0]):
                best = (len(pattern), spec)
    return best[1] if best else None


def _suggestions(query: str) -> str:
    by_key = {spec.name.lower(): spec.name for spec in _catalog()}
    close = difflib.get_close_matches(query.lower(), list(by_key), n=3, cutoff=0.5)
    alias_hits = [
        spec.name
        for spec in _catalog()
        for alias in spec.aliases
        if difflib.SequenceMatcher(None, query.lower(), alias.lower()).ratio() >= 0.6
    ]
    names = list(dict.fromkeys([by_key[c] for c in close] + alias_hits))[:3]
    if names:
        return "close matches: " + ", ".join(names)
    return "known: " + ", ".join(spec.name for spec in _catalog())


@dataclass(frozen=True, kw_only=True)
class DetectedGpu:
    """A GPU seen through NVML on this machine; `spec` is None when the catalog lacks it."""

    index: int
    nvml_name: str
    memory_bytes: int
    spec: GpuSpec | None


def detect_local_gpus() -> list[DetectedGpu]:
    """Local GPUs via NVML; an empty list when there is no driver, library or device."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except (pynvml.NVMLError, OSError):
        return []
    try:
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            if isinstance(name, bytes):
                name = name.decode()
            memory = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
            found.append(DetectedGpu(index=index, nvml_name=name, memory_bytes=memory, spec=match_nvml_name(name)))
        return found
    except (pynvml.NVMLError, OSError):
        return []
    finally:
        try:
            pynvml.nvmlShutdown()
        except (pynvml.NVMLError, OSError):
            pass


def resolve_gpu_type(requested: str = "auto") -> tuple[GpuSpec, str]:
    """The GPU to plan for, and a one-line note saying where the choice came from."""
    if requested.strip().lower() != "auto":
        spec = load_gpu(requested)
        return spec, f"using {spec.name} (--gpu-type {requested})"
    detected = detect_local_gpus()
    if not detected:
        default = load_gpu(DEFAULT_GPU_TYPE)
        return default, f"no local GPU detected; assuming {default.name} (choose with --gpu-type)"
    counts: dict[str, int] = {}
    for gpu in detected:
        counts[gpu.nvml_name] = counts.get(gpu.nvml_name, 0) + 1
    seen = ", ".join(f"{n} x {name}" for name, n in counts.items())
    first = next(gpu for gpu in detected if gpu.nvml_name == max(counts, key=counts.__getitem__))
    if first.spec is not None:
        return first.spec, f"detected {seen} ({first.spec.name})"
    closest = min(_catalog(), key=lambda spec: abs(spec.memory_bytes - first.memory_bytes))
    return closest, (
        f"detected {seen}, not in the catalog; assuming {closest.name}, "
        f"the closest by memory ({first.memory_bytes / _GiB:.1f} GiB) (choose with --gpu-type)"
    )
