"""Build the DeepSpeed ops a trial will load before its clock starts, in a process of its own.

Which ops (DeepSpeed 0.19.8): DeepSpeedCPUAdam loads cpu_adam (ops/adam/cpu_adam.py) and
FusedAdam loads fused_adam (ops/adam/fused_adam.py), which `make_optimizer` picks as DeepSpeed-Chat
does (offload -> CPU Adam, else FusedAdam on CUDA); TorchBackend's build_shm_op (comm/torch.py)
loads ShareMemCommBuilder's deepspeed_shm_comm on the CPU accelerator whenever it is compatible,
used with more than one rank; the Hybrid Engine's kernels load transformer_inference on CUDA.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..doctor._locks import clear_stale_locks, extensions_root
from ..errors import UserInputError
from ._process import run_group

BUILD_TIMEOUT_S = 1800.0
_BUILT: set[tuple[str, str]] = set()
"""(extensions dir, builder) already built by this process: a search builds once, not per trial."""
_FAILED: dict[tuple[str, str], str] = {}
"""(extensions dir, builder) whose build failed in this process, and why: later trials that load it fail
at once with the same reason instead of rebuilding; trials that need other ops still run."""


class OpBuildError(UserInputError):
    """An op failed to build: the trial that loads it cannot run (a result, not an abort of a search)."""


_BUILD = """
import sys
from deepspeed.accelerator import get_accelerator
for name in sys.argv[1:]:
    builder = get_accelerator().create_op_builder(name)
    if builder is None:
        continue
    print("building", name, flush=True)
    builder.load(verbose=False)
    print("built", name, flush=True)
"""


def ops_for(ds_configs: Mapping[str, Mapping[str, Any]], *, device: str, ranks_per_node: int) -> list[str]:
    """Op builders the trial's DeepSpeed configs make it load (builder class names)."""
    offload = any(
        (c.get("zero_optimization", {}).get("offload_optimizer") or {}).get("device") == "cpu"
        for c in ds_configs.values()
    )
    trains = any("offload_optimizer" in c.get("zero_optimization", {}) for c in ds_configs.values())
    he = any((c.get("hybrid_engine") or {}).get("enabled") for c in ds_configs.values())
    ops = []
    if offload:
        ops.append("CPUAdamBuilder")
    elif trains and device == "cuda":
        ops.append("FusedAdamBuilder")
    if device == "cpu" and ranks_per_node > 1:
        ops.append("ShareMemCommBuilder")
    if device == "cuda" and he:
        ops.append("InferenceBuilder")
    return ops


def _built_in(log_path: Path) -> set[str]:
    """The ops the build script reported built (one "built NAME" line each) before it failed."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return set()
    return {line.split()[1] for line in lines if line.startswith("built ") and len(line.split()) == 2}


def unblock_locks(root: str) -> list[str]:
    """Clear stale locks under `root`; one line naming a lock that cannot be proven stale."""
    removed, unproven = clear_stale_locks(root)
    if unproven:
        raise UserInputError(
            f"{unproven[0].path}: a torch extension lock whose holder cannot be checked; remove it if no build is running"
        )
    return removed


def prebuild(ops: list[str], *, env: Mapping[str, str], log_path: Path) -> list[str]:
    """Build `ops` (once per process and extensions dir) with a spinner on stderr; return those built now."""
    root = env.get("TORCH_EXTENSIONS_DIR") or extensions_root()
    failed = [op for op in ops if (root, op) in _FAILED]
    if failed:
        raise OpBuildError(_FAILED[(root, failed[0])])
    wanted = [op for op in ops if (root, op) not in _BUILT]
    unblock_locks(root)
    if not wanted:
        return []
    from rich.console import Console

    console = Console(stderr=True)
    started = time.time()
    with console.status(f"building DeepSpeed ops {', '.join(wanted)} (once, before the trial clock)"):
        finished = run_group(
            [sys.executable, "-c", _BUILD, *wanted],
            env={**os.environ, **env},
            cwd=log_path.parent,
            log_path=log_path,
            timeout_s=BUILD_TIMEOUT_S,
            launched_at=started,
        )
    if finished.returncode != 0:
        built = _built_in(log_path)
        _BUILT.update((root, op) for op in wanted if op in built)
        broken = [op for op in wanted if op not in built]
        message = f"building DeepSpeed op {broken[0]} failed; see {log_path}"
        _FAILED.update(((root, op), message) for op in broken)
        raise OpBuildError(message)
    console.print(f"built DeepSpeed ops {', '.join(wanted)} in {time.time() - started:.1f} s", highlight=False)
    _BUILT.update((root, op) for op in wanted)
    return wanted
