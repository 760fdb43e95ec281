"""The cost model against measurement, over the trials that have both."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..record import Status
from ._load import StudyDir
from ._records import Accuracy


def _mape(pairs: list[tuple[float, float]]) -> float | None:
    pairs = [(p, m) for p, m in pairs if m > 0]
    return float(np.mean([abs(p - m) / m for p, m in pairs])) if pairs else None


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Rank correlation (Pearson on average ranks); None when undefined."""
    if len(a) < 3:
        return None
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def numeric_column(t: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(t[name], errors="coerce") if name in t else pd.Series(math.nan, index=t.index)


def build_accuracy(study: StudyDir) -> Accuracy:
    t = study.trials
    ps, ms = numeric_column(t, "predicted_samples_per_s"), numeric_column(t, "measured_samples_per_s")
    pm, mm = numeric_column(t, "predicted_gpu_peak_bytes"), numeric_column(t, "measured_gpu_peak_bytes")
    both_t, both_m = ps.notna() & ms.notna(), pm.notna() & mm.notna()
    if study.simulated:  # a simulate study's measured_* are the cost model's own answers, not measurements
        both_t = both_m = pd.Series(False, index=t.index)
    throughput = tuple(zip(ps[both_t].astype(float), ms[both_t].astype(float)))
    memory = tuple(zip(pm[both_m].astype(float), mm[both_m].astype(float)))
    ooms = t["status"] == Status.OOM
    cap = study.memory_cap_bytes
    ooms_predicted = int((ooms & (pm > cap)).sum()) if cap is not None else 0
    if study.simulated:
        note = "simulate backend: nothing was measured, every figure is a cost-model prediction"
    elif not throughput and not memory:
        note = "no trial has both a prediction and a measurement yet"
    else:
        note = f"{len(throughput)} trial(s) with measured throughput, {len(memory)} with measured memory"
    return Accuracy(
        throughput,
        memory,
        _mape(list(throughput)),
        _mape(list(memory)),
        spearman(ps[both_t].to_numpy(float), ms[both_t].to_numpy(float)),
        int(ooms.sum()) if not study.simulated else 0,
        ooms_predicted if not study.simulated else 0,
        note,
    )
