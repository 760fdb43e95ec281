"""Calibration rows shipped with dstune: measured trials as plain CSV (trials.csv columns), never pickles.

Every CSV under data/ is a table of measured trials with the columns `dstune search` writes
(status, knobs, measured_*, step, model, critic_model, gpus, gpu_type, device). A study uses
the rows measured on the same device and step to fit the cost model's constants before its
own first trial (`dstune.search.shipped_observations`).

The evidence corpus (data/evidence/: published GPU measurements, each cited) and the fit made
from it are reached through the lazily imported names below: `load_corpus`, `reproduce`,
`calibration_for(gpu)` (fitted constants, 90% interval factor, and the line saying what backs them).
"""

from __future__ import annotations

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
