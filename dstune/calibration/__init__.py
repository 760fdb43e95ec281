"""Calibration rows shipped with dstune: measured trials as plain CSV (trials.csv columns), never pickles.

Every CSV under data/ is a table of measured trials with the columns `dstune search` writes
(status, knobs, measured_*, step, model, critic_model, gpus, gpu_type, device). A study uses
the rows measured on the same device and step to fit the cost model's constants before its
own first trial.

The evidence corpus (data/evidence/: published GPU measurements, each cited) and the fit made
from it are reached through the lazily imported names below: `load_corpus`, `reproduce`,
`calibration_for(gpu)` (fitted constants, 90% interval factor, and the line saying what backs them).
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

DATA_DIR = Path(str(resources.files("dstune.calibration") / "data"))


_LAZY = {
    "EvidenceRow": "_evidence",
    "Source": "_evidence",
    "load_corpus": "_evidence",
    "load_sources": "_evidence",
    "corpus_version": "_evidence",
    "Case": "_reproduce",
    "reproduce": "_reproduce",
    "choose": "_reproduce",
    "GpuCalibration": "_shipped",
    "calibration_for": "_shipped",
    "fitted_constants": "_shipped",
    "interval_factor": "_shipped",
    "backing_text": "_shipped",
}


def __getattr__(name: str):
    """Import the evidence modules on first use (they pull in numpy and the cost model)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def tables() -> list[Path]:
    return sorted(DATA_DIR.glob("*.csv"))


@functools.cache
def _setup(step: str, model: str, critic: str, gpus: int, gpu_type: str):
    from ..catalog import load_gpu, load_model, make_cluster
    from ..search._calibrate import Setup

    return Setup(
        step=step,
        model=load_model(model),
        critic_model=load_model(critic) if critic else None,
        cluster=make_cluster(load_gpu(gpu_type), gpus),
    )


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
    import csv

    with path.open(newline="", encoding="utf-8") as handle:
        return any(
            record.get("step") == step and record.get("status") in ("ok", "oom") for record in csv.DictReader(handle)
        )
