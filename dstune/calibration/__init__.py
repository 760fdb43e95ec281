"""Calibration rows shipped with dstune: measured trials as plain CSV (trials.csv columns), never pickles.

Every CSV under data/ is a table of measured trials with the columns `dstune search` writes
(status, knobs, measured_*, step, model, critic_model, gpus, gpu_type, device). A study uses
the rows measured on the same device and step to fit the cost model's constants before its
own first trial.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

DATA_DIR = Path(str(resources.files("dstune.calibration") / "data"))


def tables() -> list[Path]:
    return sorted(DATA_DIR.glob("*.csv"))


@functools.lru_cache(maxsize=None)
def _setup(step: str, model: str, critic: str, gpus: int, gpu_type: str):
    from ..catalog import load_gpu, load_model, make_cluster
    from ..search._calibrate import Setup

    return Setup(step=step, model=load_model(model), critic_model=load_model(critic) if critic else None,
                 cluster=make_cluster(load_gpu(gpu_type), gpus))


def shipped_observations(step: str, device: str | None = None) -> tuple:
    """Observations from the shipped tables for this step (and device, when given)."""
    from ..search._backends import read_table
    from ..search._calibrate import Observation

    found = []
    for path in tables():
        for row in read_table(path, step) if _has_step(path, step) else []:
            if device and row.device and row.device != device:
                continue
            extra = row.extra
            setup = _setup(step, extra["model"], extra.get("critic_model") or "", int(extra["gpus"]), extra["gpu_type"])
            m = row.measured
            found.append(Observation(values=row.values, status=row.status,
                                     samples_per_s=m.samples_per_s if m else None,
                                     gpu_peak_bytes=m.gpu_peak_bytes if m else None, setup=setup))
    return tuple(found)


def _has_step(path: Path, step: str) -> bool:
    import csv

    with path.open(newline="", encoding="utf-8") as handle:
        return any(record.get("step") == step and record.get("status") in ("ok", "oom")
                   for record in csv.DictReader(handle))
