"""The measured trials shipped under dstune/calibration/data, as observations a study fits to first."""

from __future__ import annotations

import csv
import functools
from pathlib import Path

from ..calibration import tables
from ..catalog import Setup, load_gpu, load_model, make_cluster
from ..record import Status
from ._backends import read_table
from ._calibrate import Observation


@functools.cache
def _setup(step: str, model: str, critic: str, gpus: int, gpu_type: str) -> Setup:
    return Setup(
        step=step,
        model=load_model(model),
        critic_model=load_model(critic) if critic else None,
        cluster=make_cluster(load_gpu(gpu_type), gpus),
    )


def shipped_observations(step: str, device: str | None = None) -> tuple[Observation, ...]:
    """Observations from the shipped tables for this step (and device, when given)."""
    found = []
    for path in tables():
        for row in read_table(path, step) if _has_step(path, step) else []:
            if device and row.device and row.device != device:
                continue
            extra = row.extra
            setup = _setup(step, extra["model"], extra.get("critic_model") or "", int(extra["gpus"]), extra["gpu_type"])
            m = row.measured
            found.append(
                Observation(
                    values=row.values,
                    status=row.status,
                    samples_per_s=m.samples_per_s if m else None,
                    gpu_peak_bytes=m.gpu_peak_bytes if m else None,
                    setup=setup,
                )
            )
    return tuple(found)


def _has_step(path: Path, step: str) -> bool:
    with path.open(newline="", encoding="utf-8") as handle:
        return any(
            record.get("step") == step and record.get("status") in (Status.OK, Status.OOM)
            for record in csv.DictReader(handle)
        )
