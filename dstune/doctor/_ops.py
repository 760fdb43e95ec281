"""DeepSpeed's C++/CUDA ops that RLHF plans lean on: prebuilt, JIT-buildable here, or neither."""

from __future__ import annotations

import glob
import os
import shutil
from dataclasses import dataclass

OPS: tuple[tuple[str, str], ...] = (("cpu_adam", "CPUAdamBuilder"), ("fused_adam", "FusedAdamBuilder"))
"""(DeepSpeed op name, its builder): DeepSpeedCPUAdam for offload, FusedAdam for GPU training."""


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
    jit_possible = shutil.which("ninja") is not None and any(shutil.which(c) for c in ("c++", "g++", "clang++"))
    found = []
    for name, builder_name in OPS:
        note = ""
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
