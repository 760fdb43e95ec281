"""DeepSpeed's C++/CUDA ops that RLHF plans lean on: prebuilt, JIT-buildable here, or neither."""

from __future__ import annotations

import glob
import os
import shutil
from dataclasses import dataclass

OPS: tuple[tuple[str, str], ...] = (
    ("cpu_adam", "CPUAdamBuilder"),
    ("fused_adam", "FusedAdamBuilder"),
    ("transformer_inference", "InferenceBuilder"),
)
"""(DeepSpeed op name, its builder): DeepSpeedCPUAdam for offload, FusedAdam for GPU training, the Hybrid
Engine's inference kernels for generation."""
CUDA_OPS = frozenset({"fused_adam", "transformer_inference"})
"""Ops whose CUDA build compiles .cu files: a JIT build needs nvcc, not only ninja and a C++ compiler."""


@dataclass(frozen=True, kw_only=True)
class OpStatus:
    name: str
    prebuilt: bool
    """Compiled into the installed wheel (DS_BUILD_*)."""
    compatible: bool
    """The builder's own is_compatible() on this accelerator."""
    jit_cached: bool
    """A JIT build already sits in the torch extensions cache."""
    jit_possible: bool
    """ninja and a C++ compiler are on PATH."""
    note: str = ""


def _extensions_dir() -> str:
    return os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.expanduser("~/.cache/torch_extensions")


def nvcc_path() -> str | None:
    """nvcc on PATH, else under CUDA_HOME (where torch's cpp_extension looks)."""
    found = shutil.which("nvcc")
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if found is None and home and os.access(os.path.join(home, "bin", "nvcc"), os.X_OK):
        found = os.path.join(home, "bin", "nvcc")
    return found


def op_statuses() -> list[OpStatus]:
    """Ask the accelerator's op builders (imports deepspeed)."""
    try:
        from deepspeed.accelerator import get_accelerator
        from deepspeed.git_version_info import installed_ops
    except Exception as error:  # noqa: BLE001
        return [
            OpStatus(
                name=n,
                prebuilt=False,
                compatible=False,
                jit_cached=False,
                jit_possible=False,
                note=f"deepspeed not importable: {error}",
            )
            for n, _ in OPS
        ]
    compiles = shutil.which("ninja") is not None and any(shutil.which(c) for c in ("c++", "g++", "clang++"))
    on_cuda = get_accelerator().device_name() == "cuda"
    found = []
    for name, builder_name in OPS:
        note = ""
        jit_possible = compiles
        if on_cuda and name in CUDA_OPS and nvcc_path() is None:
            jit_possible, note = False, "its CUDA build needs nvcc (the CUDA toolkit), not on PATH or under CUDA_HOME"
        try:
            builder = get_accelerator().create_op_builder(builder_name)
            compatible = bool(builder is not None and builder.is_compatible(verbose=False))
            if builder is None:
                note = f"{get_accelerator().device_name()} accelerator has no {builder_name}"
        except Exception as error:  # noqa: BLE001
            compatible, note = False, f"{type(error).__name__}: {error}"
        cached = bool(
            glob.glob(os.path.join(_extensions_dir(), "*", name, f"{name}*.so"))
            or glob.glob(os.path.join(_extensions_dir(), name, f"{name}*.so"))
        )
        found.append(
            OpStatus(
                name=name,
                prebuilt=bool(installed_ops.get(name)),
                compatible=compatible,
                jit_cached=cached,
                jit_possible=jit_possible,
                note=note,
            )
        )
    return found
