"""The stages of the acceptance run, each a process group of its own that the deadline can end whole."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..profile._process import end_group, start_watchdog, stop_watchdog
from ._deadline import Deadline

BUILD_DELAY_ENV = "DSTUNE_ACCEPTANCE_BUILD_DELAY_S"
"""Seconds each op build sleeps first, inside its own process group: how the deadline is tested with
builds slower than the run (tests/acceptance); unset on the device."""

VERSIONS = """
import importlib, json, sys
found = {"python": {"version": sys.version.split()[0], "file": sys.executable}}
for name in ("torch", "deepspeed", "transformers", "huggingface_hub", "tokenizers", "optuna", "pydantic",
             "hjson", "accelerate", "dstune"):
    try:
        module = importlib.import_module(name)
        found[name] = {"version": getattr(module, "__version__", "?"), "file": getattr(module, "__file__", "")}
    except Exception as error:
        found[name] = {"error": f"{type(error).__name__}: {error}"}
import torch
found["torch"]["cuda"] = str(torch.version.cuda)
found["torch"]["cuda_available"] = torch.cuda.is_available()
if torch.cuda.is_available():
    found["torch"]["device"] = torch.cuda.get_device_name(0)
    found["torch"]["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
print(json.dumps(found, indent=1))
"""

ALL_REDUCE = """
import os, socket, sys, time, torch, torch.distributed as dist
backend = sys.argv[1]
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
device = torch.device("cuda", 0) if backend == "nccl" else torch.device("cpu")
x = torch.full((1 << 20,), 2.0, device=device)
start = time.perf_counter()
dist.all_reduce(x)
torch.cuda.synchronize() if backend == "nccl" else None
print(f"{backend} 1-rank all_reduce of 4 MiB: sum {x[0].item():g}, {time.perf_counter() - start:.3f} s (measured)")
dist.destroy_process_group()
"""

BUILD = f"""
import os, sys, time
time.sleep(float(os.environ.get({BUILD_DELAY_ENV!r}) or 0))
from deepspeed.accelerator import get_accelerator
name = sys.argv[1]
builder = get_accelerator().create_op_builder(name)
if builder is None:
    print(name, "is not an op of DeepSpeed's", get_accelerator().device_name(), "accelerator")
    sys.exit(0)
start = time.time()
builder.load(verbose=True)
print("built", name, f"in {{time.time() - start:.1f}} s (measured)")
"""


@dataclass(frozen=True)
class Outcome:
    """How one stage ended: ok, failed (nonzero exit), timeout (ended by the deadline) or skipped."""

    name: str
    status: str
    seconds: float
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "status": self.status, "seconds": round(self.seconds, 1), "detail": self.detail}


def run_stage(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log: Path,
    timeout_s: float,
    stdout: Path | None = None,
) -> Outcome:
    """Run `argv` in a session of its own; past `timeout_s` its whole group (nvcc, ranks) is ended."""
    if timeout_s <= 0:
        return Outcome(name, "skipped", 0.0, "no time left before the deadline")
    start = time.time()
    with open(log, "ab", buffering=0) as err, open(stdout or log, "ab", buffering=0) as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=str(cwd),
            env=dict(env),
            start_new_session=True,
        )
        watchdog = start_watchdog(proc.pid)
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            end_group(proc, proc.pid, grace_s=3.0)
            stop_watchdog(watchdog)
    seconds = time.time() - start
    if timed_out:
        return Outcome(name, "timeout", seconds, f"ended after {timeout_s:.0f} s (the run's deadline)")
    if proc.returncode != 0:
        return Outcome(name, "failed", seconds, f"exit {proc.returncode}: {_last_line(log)}")
    return Outcome(name, "ok", seconds)


def _last_line(log: Path) -> str:
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:240] if lines else ""


def python() -> str:
    return sys.executable


def versions(work: Path, env: Mapping[str, str], deadline: Deadline) -> list[Outcome]:
    """The versions the run really imports (from where), nvidia-smi, and a 1-rank all-reduce."""
    found = [
        run_stage(
            "versions",
            [python(), "-c", VERSIONS],
            env=env,
            cwd=work,
            log=work / "versions.log",
            stdout=work / "versions.json",
            timeout_s=deadline.budget(120),
        )
    ]
    if shutil.which("nvidia-smi"):
        found.append(
            run_stage(
                "nvidia-smi",
                ["nvidia-smi"],
                env=env,
                cwd=work,
                log=work / "nvidia-smi.txt",
                timeout_s=deadline.budget(30),
            )
        )
    backend = "gloo" if env.get("DS_ACCELERATOR") == "cpu" else "nccl"
    found.append(
        run_stage(
            "all-reduce",
            [python(), "-c", ALL_REDUCE, backend],
            env=env,
            cwd=work,
            log=work / "all_reduce.log",
            timeout_s=deadline.budget(60),
        )
    )
    return found


def build_ops(
    ops: Mapping[str, float], work: Path, env: Mapping[str, str], arch: str, timeout_s: float
) -> list[Outcome]:
    """Every op at once, each in its own group; `ops` gives each its share of the machine's cores (MAX_JOBS),
    so together they stay under one cap (transformer_inference has many .cu files, fused_adam one)."""
    if not ops:
        return [Outcome("ops", "ok", 0.0, "no ops to build up front on this accelerator")]
    cores = os.cpu_count() or 1
    results: list[Outcome] = []

    def build(op: str) -> None:
        build_env = {**env, "MAX_JOBS": str(max(1, int(cores * ops[op])))}
        if arch:
            build_env["TORCH_CUDA_ARCH_LIST"] = arch
        results.append(
            run_stage(
                f"build {op}",
                [python(), "-c", BUILD, op],
                env=build_env,
                cwd=work,
                log=work / f"build_{op}.log",
                timeout_s=timeout_s,
            )
        )

    threads = [threading.Thread(target=build, args=(op,)) for op in ops]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(results, key=lambda o: o.name)
