"""More than one search worker on this machine: the same command again for each, with its own output
folder, seed and GPUs, against one study."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._options import SearchFlags

_VALUE_FLAGS = {"--out", "--storage", "--study-name", "--trials", "--workers", "--seed", "--confirm-rounds"}


def _worker_argv(argv: list[str], *, out: Path, storage: str, study_name: str, trials: int, seed: int) -> list[str]:
    """This command for one more worker: same setup and space, its own output folder and seed."""
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        flag = token.split("=", 1)[0]
        if flag in _VALUE_FLAGS:
            skip = "=" not in token
            continue
        if flag == "--json":
            continue
        kept.append(token)
    return [
        sys.executable,
        "-m",
        "dstune",
        *kept,
        "--out",
        str(out),
        "--storage",
        storage,
        "--study-name",
        study_name,
        "--trials",
        str(trials),
        "--seed",
        str(seed),
        "--confirm-rounds",
        "0",  # several workers: the pick is known only when all have finished, and is not re-measured
        "--json",
    ]


def start_workers(args: SearchFlags, prepared: Any) -> list[Any]:
    """Start workers 1..N-1 (this process is worker 0), each with its own GPUs where there are any."""
    from ...catalog import detect_local_gpus

    req, out, per = prepared.request, prepared.out, args.gpus
    gpus = len(detect_local_gpus())
    procs = []
    for i in range(1, prepared.workers):
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in range(i * per, (i + 1) * per))
        log = open(out / f"worker-{i}.log", "w")  # noqa: SIM115 - the child writes it until it ends
        procs.append(
            subprocess.Popen(
                _worker_argv(
                    list(args.argv),
                    out=out / f"worker-{i}",
                    storage=req.storage,
                    study_name=req.study_name,
                    trials=req.trials,
                    seed=(args.seed or 0) + i,
                ),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in range(per))
    return procs
