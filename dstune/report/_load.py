"""Read a study directory (plan.json + trials.csv) into one typed record.

A bad or missing file is a UserInputError naming that file, never a traceback:
reports are run on directories copied between machines and half-finished studies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UserInputError
from ..plan import DEFAULT_STEP, knob_fields, step_names, step_strategy
from ..record import Status, read_plan_json
from ..record._files import check_trials_schema

STATUSES = tuple(s.value for s in Status)
METRICS = ("samples_per_s", "tokens_per_s", "gpu_peak_bytes", "step_s")
"""Figures in trials.csv as predicted_<metric> and measured_<metric>, plus <prefix>_mfu and <prefix>_time_<phase>."""


@dataclass(frozen=True, eq=False)
class StudyDir:
    """One study directory: `meta` is plan.json, `trials` is trials.csv plus `fig_*` columns.

    `fig_<metric>` is what every figure plots: the measured value where the backend
    measures and the trial has one, else the cost model's prediction (`fig_basis` says which).
    """

    path: Path
    meta: dict[str, Any]
    trials: pd.DataFrame
    knobs: tuple[str, ...]
    phases: tuple[str, ...]

    @property
    def step(self) -> str:
        return str(self.meta.get("step", DEFAULT_STEP))

    @property
    def backend(self) -> str:
        return str(self.meta.get("backend", "simulate"))

    @property
    def simulated(self) -> bool:
        return self.backend == "simulate"

    @property
    def gpus(self) -> int:
        return int(self.meta.get("gpus") or 0)

    @property
    def devices(self) -> tuple[str, ...]:
        """Where trials ran (trials.csv's optional `device` column), e.g. 'cpu' or 'NVIDIA H100 80GB HBM3'."""
        if "device" not in self.trials:
            return ()
        return tuple(sorted({str(d) for d in self.trials["device"].dropna() if str(d).strip()}))

    @property
    def on_cpu(self) -> bool:
        """Trials ran on DeepSpeed's CPU accelerator: no GPU memory, no inference kernels, no GPU meaning."""
        if self.simulated:
            return False
        return str(self.meta.get("gpu_type", "")).lower() == "cpu" or (
            bool(self.devices) and all("cpu" in d.lower() for d in self.devices)
        )

    @property
    def memory_cap_bytes(self) -> float | None:
        """The GPU memory cap; None for a CPU study (a GPU's cap says nothing about a run in host memory)."""
        if self.on_cpu:
            return None
        cap = self.meta.get("memory_cap_bytes")
        return float(cap) if isinstance(cap, (int, float)) and cap > 0 else None


def _read_plan_json(path: Path) -> dict[str, Any]:
    meta = read_plan_json(path)
    step = meta.get("step", DEFAULT_STEP)
    if step not in step_names():
        raise UserInputError(f"{path}: step {step!r} is not one of {', '.join(step_names())}")
    return meta


def _read_trials_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise UserInputError(f"{path}: not found (is this a directory written by 'dstune search'?)")
    try:
        trials = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as error:
        raise UserInputError(f"{path}: cannot be read as CSV ({str(error).strip().splitlines()[0]})") from None
    missing = [c for c in ("number", "status") if c not in trials.columns]
    if missing:
        raise UserInputError(f"{path}: missing column(s) {', '.join(missing)}")
    try:
        trials["number"] = pd.to_numeric(trials["number"]).astype(int)
    except (ValueError, TypeError):
        raise UserInputError(f"{path}: column 'number' must hold trial numbers") from None
    check_trials_schema(list(trials.columns), trials.to_dict("records"), str(path))
    trials["status"] = trials["status"].fillna(Status.ERROR.value).astype(str).str.strip().str.lower()
    trials["source"] = trials["source"].fillna("sampler").astype(str) if "source" in trials else "sampler"
    return trials.sort_values("number", kind="stable").reset_index(drop=True)


def _numeric(trials: pd.DataFrame, column: str) -> pd.Series:
    if column not in trials:
        return pd.Series(math.nan, index=trials.index, dtype=float)
    return pd.to_numeric(trials[column], errors="coerce").astype(float)


def _add_figure_columns(trials: pd.DataFrame, phases: tuple[str, ...]) -> None:
    """fig_* = what the figures plot: the measurement where the trial has one, else the prediction
    (`fig_basis` says which). A simulated study has no measured_* figures at all."""
    has_measured = _numeric(trials, "measured_samples_per_s").notna()
    trials["fig_basis"] = has_measured.map({True: "measured", False: "predicted"})
    for metric in METRICS + ("mfu",) + tuple(f"time_{p}" for p in phases):
        predicted, actual = _numeric(trials, f"predicted_{metric}"), _numeric(trials, f"measured_{metric}")
        if metric == "mfu":  # a predicted MFU beside a measured rate would mislead: leave it out
            trials[f"fig_{metric}"] = actual.where(has_measured, predicted.where(~has_measured))
            continue
        trials[f"fig_{metric}"] = actual.where(has_measured & actual.notna(), predicted)


def study_name_and_storage(meta: dict[str, Any]) -> tuple[str | None, str | None]:
    """plan.json's "study": a name, or {"name": ..., "storage": ...}."""
    study = meta.get("study")
    if isinstance(study, dict):
        return (
            str(study["name"]) if study.get("name") else None,
            str(study["storage"]) if study.get("storage") else None,
        )
    return (str(study) if study else None), None


def load_study_dir(path: str | Path) -> StudyDir:
    """Read plan.json and trials.csv of a study directory (study.db is read lazily, if at all)."""
    root = Path(path)
    if not root.is_dir():
        raise UserInputError(f"{root}: no such study directory")
    meta = _read_plan_json(root / "plan.json")
    trials = _read_trials_csv(root / "trials.csv")
    step = str(meta.get("step", DEFAULT_STEP))
    knobs = tuple(f.name for f in knob_fields(step) if f.name in trials.columns)
    phases = tuple(
        p for p in step_strategy(step).phases if f"predicted_time_{p}" in trials or f"measured_time_{p}" in trials
    )
    _add_figure_columns(trials, phases)
    return StudyDir(root, meta, trials, knobs, phases)
