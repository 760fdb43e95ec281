"""Read a study directory (plan.json + trials.csv) into one typed record.

A bad or missing file is a UserInputError naming that file, never a traceback:
reports are run on directories copied between machines and half-finished studies.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..costmodel import PPO_PHASES, TRAIN_PHASES
from ..errors import UserInputError
from ..plan import STEPS, knob_fields

STATUSES = ("ok", "oom", "timeout", "error", "crashed", "pruned", "infeasible")
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
        return str(self.meta.get("step", "ppo"))

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
    def memory_cap_bytes(self) -> float | None:
        cap = self.meta.get("memory_cap_bytes")
        return float(cap) if isinstance(cap, (int, float)) and cap > 0 else None


def _read_plan_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserInputError(f"{path}: not found (is this a directory written by 'dstune search'?)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserInputError(f"{path}: not valid JSON ({str(error).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise UserInputError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    step = meta.get("step", "ppo")
    if step not in STEPS:
        raise UserInputError(f"{path}: step {step!r} is not one of {', '.join(STEPS)}")
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
    trials["status"] = trials["status"].fillna("error").astype(str).str.strip().str.lower()
    trials["source"] = trials["source"].fillna("sampler").astype(str) if "source" in trials else "sampler"
    return trials.sort_values("number", kind="stable").reset_index(drop=True)


def _numeric(trials: pd.DataFrame, column: str) -> pd.Series:
    if column not in trials:
        return pd.Series(math.nan, index=trials.index, dtype=float)
    return pd.to_numeric(trials[column], errors="coerce").astype(float)


def _add_figure_columns(trials: pd.DataFrame, phases: tuple[str, ...], simulated: bool) -> None:
    """fig_* = what the figures plot: measured where the backend measures and the trial has a
    measurement, else predicted. In a simulate study the backend's answer is the cost model's, in
    whichever column family the writer filed it (measured_* is read first, then predicted_*)."""
    has_measured = _numeric(trials, "measured_samples_per_s").notna()
    trials["fig_basis"] = "predicted" if simulated else has_measured.map({True: "measured", False: "predicted"})
    for metric in METRICS + ("mfu",) + tuple(f"time_{p}" for p in phases):
        predicted, actual = _numeric(trials, f"predicted_{metric}"), _numeric(trials, f"measured_{metric}")
        use = actual.notna() & (True if simulated else has_measured)
        if metric == "mfu" and not simulated:  # a predicted MFU beside a measured rate would mislead: leave it out
            use = has_measured
        trials[f"fig_{metric}"] = actual.where(use, predicted)
    if "mfu" in trials:  # the contract's single mfu column, if that is what the writer used
        trials["fig_mfu"] = trials["fig_mfu"].fillna(_numeric(trials, "mfu"))


def study_name_and_storage(meta: dict[str, Any]) -> tuple[str | None, str | None]:
    """plan.json's "study": a name, or {"name": ..., "storage": ...}."""
    study = meta.get("study")
    if isinstance(study, dict):
        return (str(study["name"]) if study.get("name") else None,
                str(study["storage"]) if study.get("storage") else None)
    return (str(study) if study else None), None


def load_study_dir(path: str | Path) -> StudyDir:
    """Read plan.json and trials.csv of a study directory (study.db is read lazily, if at all)."""
    root = Path(path)
    if not root.is_dir():
        raise UserInputError(f"{root}: no such study directory")
    meta = _read_plan_json(root / "plan.json")
    trials = _read_trials_csv(root / "trials.csv")
    step = str(meta.get("step", "ppo"))
    knobs = tuple(f.name for f in knob_fields(step) if f.name in trials.columns)
    phases = tuple(p for p in (PPO_PHASES if step == "ppo" else TRAIN_PHASES)
                   if f"predicted_time_{p}" in trials or f"measured_time_{p}" in trials)
    _add_figure_columns(trials, phases, simulated=meta.get("backend", "simulate") == "simulate")
    return StudyDir(root, meta, trials, knobs, phases)
