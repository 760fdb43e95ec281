"""The learned objective: calibrated cost model + GP residual, scored over the whole candidate grid.

Predictions are in log units: log samples/s and log peak GPU bytes, each with a
standard deviation, and P(fits) = P(peak <= cap) under a normal in log space.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..costmodel import DEFAULT_CONSTANTS, CostConstants, estimate_table
from ..record import Status
from ._calibrate import Calibration, Observation, Setup, columns_of, fit_constants, predict
from ._gp import ResidualGP
from ._grid import Grid
from ._residual import KnobResidual

GP_MIN_POINTS = 5
"""Below this many measurements the memory residual is a constant offset with the prior spread."""
KNOB_SPREAD_WEIGHT = 0.1
"""Share of the knob residual's variance in a plan's reported throughput spread, on top of the spread
every plan shares. The sampler ranks by the shared spread alone (`Prediction.sd_shared`): the knob
model's variance grows with the number of knob values a plan has that nothing measured yet, and used
as an exploration bonus it draws proposals away from the corrected ranking towards the plans most
unlike those measured (on the SFT table: 6.5 trials at weight 0.1, 2 at 0)."""
CONSTANTS_FROM = 8
"""Measurements (shipped and own) before the cost model's constants are refitted: fewer cannot pin
eight time constants, and a fit from one or two points reorders the prior's ranking at random.
Until then the knob residual alone learns (a shared offset and a correction per knob value)."""
PRIOR_SD_TIME = 0.35
"""Spread of log(measured / predicted) throughput before any measurement (~40%)."""
PRIOR_SD_MEMORY = 0.12
EXACT_SD = 1e-3
"""Simulate mode: the model is the measurement."""


@dataclass
class Prediction:
    log_sps: np.ndarray
    sd_sps: np.ndarray
    """Spread of log samples/s per plan (shown as the prediction's interval)."""
    log_mem: np.ndarray
    sd_mem: np.ndarray
    fits_host: np.ndarray
    cap_bytes: float
    sd_shared: float = PRIOR_SD_TIME
    """The part of the throughput spread every plan shares (the residual's offset), without the
    per-plan spread of knob values nothing measured yet: what the sampler's EI ranks by."""

    @property
    def p_fit(self) -> np.ndarray:
        from scipy.stats import norm  # imported here: 2.7 s, and only a profile search asks

        p = norm.cdf((math.log(self.cap_bytes) - self.log_mem) / self.sd_mem)
        return np.where(self.fits_host, p, 0.0)


@dataclass
class FitRecord:
    """Prediction error of the model before and after a refit, for the closing note."""

    points: int
    time_rms_prior: float | None
    time_rms_fitted: float | None
    memory_rms_prior: float | None
    memory_rms_fitted: float | None


@dataclass
class Surrogate:
    grid: Grid
    setup: Setup
    cap_bytes: float
    prior: CostConstants = DEFAULT_CONSTANTS
    exact: bool = False
    shipped: Sequence[Observation] = ()
    he_kernels: bool = True
    transformers_version: str = ""
    """The target stack's transformers, whose forwards the memory terms follow ("": the cost model's default)."""
    learn: bool = True
    """False: never refit on trials (the bench's learning-off strategy)."""
    constants: CostConstants = DEFAULT_CONSTANTS
    calibration: Calibration | None = None
    history: list[FitRecord] = field(default_factory=list)
    _prediction: Prediction | None = None
    _knob_time: KnobResidual | None = None
    _gp_mem: ResidualGP | None = None
    _offset: tuple[float, float, float, float] = (0.0, PRIOR_SD_TIME, 0.0, PRIOR_SD_MEMORY)
    _points: int = -1

    def __post_init__(self) -> None:
        self.constants = self.prior
        cols = self.grid.columns
        self._numeric = [n for n, c in cols.items() if c.dtype.kind in "biu" and len(np.unique(c)) > 1]
        self._ranges = {
            n: (np.log2(1.0 + cols[n].astype(float)).min(), np.log2(1.0 + cols[n].astype(float)).max())
            for n in self._numeric
        }
        if self.exact:
            self._offset = (0.0, EXACT_SD, 0.0, EXACT_SD)

    # -- features -------------------------------------------------------------------------------
    def _features(self, cols: Mapping[str, np.ndarray], log_sps: np.ndarray, log_mem: np.ndarray) -> np.ndarray:
        parts = []
        for name in self._numeric:
            low, high = self._ranges[name]
            parts.append((np.log2(1.0 + cols[name].astype(float)) - low) / max(high - low, 1e-9))
        base = self._base
        for values, ref in ((log_sps, base[0]), (log_mem, base[1])):
            low, high = ref.min(), ref.max()
            parts.append((values - low) / max(high - low, 1e-9))
        return np.stack(parts, axis=1)

    def _table(self, cols: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        s = self.setup
        return estimate_table(
            s.step,
            cols,
            s.model,
            s.cluster,
            critic_model=s.critic_model or s.model,
            constants=self.constants,
            he_kernels=self.he_kernels,
            transformers_version=self.transformers_version,
        )

    # -- fitting --------------------------------------------------------------------------------
    def refit(self, own: Sequence[Observation]) -> None:
        """Refit constants (shipped rows + own trials), then the residual on own trials."""
        if not self.learn:
            own = ()
        if len(own) == self._points and self._prediction is not None:
            return
        self._points = len(own)
        data = list(self.shipped) + list(own)
        before = self.constants
        if not self.exact and len(data) >= CONSTANTS_FROM:
            self.calibration = fit_constants(data, prior=self.prior, start=self.constants)
            self.constants = self.calibration.constants
        if not hasattr(self, "_base") or self.constants != before:
            table = self._table(self.grid.columns)
            self._base = (np.log(table["samples_per_s"]), np.log(table["gpu_peak_bytes"]), table["fits_host"])
        if not self.exact:
            self._fit_residuals(own)
        self._prediction = None

    def _fit_residuals(self, own: Sequence[Observation]) -> None:
        ok = [o for o in own if o.status == Status.OK and o.samples_per_s]
        self._knob_time = self._gp_mem = None
        prior_sps, prior_mem = predict(ok, self.prior) if ok else (np.array([]), np.array([]))
        sps, mem_pred = predict(ok, self.constants) if ok else (np.array([]), np.array([]))
        y_t = np.log(np.array([o.samples_per_s for o in ok])) - np.log(sps) if ok else np.array([])
        mem_idx = [i for i, o in enumerate(ok) if o.gpu_peak_bytes]
        y_m = (
            np.log(np.array([ok[i].gpu_peak_bytes for i in mem_idx])) - np.log(mem_pred[mem_idx])
            if mem_idx
            else np.array([])
        )
        self.history.append(
            FitRecord(
                points=len(ok),
                time_rms_prior=_rms(np.log(np.array([o.samples_per_s for o in ok])) - np.log(prior_sps))
                if ok
                else None,
                time_rms_fitted=_rms(y_t) if ok else None,
                memory_rms_prior=(
                    _rms(np.log(np.array([ok[i].gpu_peak_bytes for i in mem_idx])) - np.log(prior_mem[mem_idx]))
                    if mem_idx
                    else None
                ),
                memory_rms_fitted=_rms(y_m) if mem_idx else None,
            )
        )
        n_t, n_m = len(y_t), len(y_m)
        sd_t = PRIOR_SD_TIME / math.sqrt(1 + n_t) if n_t else PRIOR_SD_TIME
        sd_m = PRIOR_SD_MEMORY / math.sqrt(1 + n_m) if n_m else PRIOR_SD_MEMORY
        self._offset = (
            float(y_t.mean()) if n_t else 0.0,
            max(sd_t, 0.05),
            float(y_m.mean()) if n_m else 0.0,
            max(sd_m, 0.03),
        )
        cols = columns_of(self.setup.step, [o.values for o in ok]) if ok else {}
        if n_t:
            knobs = {n: self.grid.space.knobs[n] for n in self.grid.space.varied}
            self._knob_time = KnobResidual(knobs, reference=ok[0].values).fit(cols, y_t)
        if n_m >= GP_MIN_POINTS:
            x = self._features(cols, np.log(sps), np.log(mem_pred))
            self._gp_mem = ResidualGP().fit(x[mem_idx], y_m, min_signal=0.03)

    # -- prediction -----------------------------------------------------------------------------
    def _apply(
        self, cols: Mapping[str, np.ndarray], log_sps: np.ndarray, log_mem: np.ndarray, fits_host: np.ndarray
    ) -> Prediction:
        mt, st, mm, sm = self._offset
        mean_t, sd_t = np.full(len(log_sps), mt), np.full(len(log_sps), st)
        mean_m, sd_m = np.full(len(log_sps), mm), np.full(len(log_sps), sm)
        if self._knob_time is not None:
            mean_t, sd_k = self._knob_time.predict(cols)
            sd_t = np.sqrt(st**2 + KNOB_SPREAD_WEIGHT * sd_k**2)
        if self._gp_mem is not None:
            mean_m, sd_m = self._gp_mem.predict(self._features(cols, log_sps, log_mem))
        return Prediction(
            log_sps + mean_t, sd_t, log_mem + mean_m, sd_m, fits_host.astype(bool), self.cap_bytes, sd_shared=st
        )

    def predict_grid(self) -> Prediction:
        if self._points < 0:
            self.refit([])
        if self._prediction is None:
            self._prediction = self._apply(self.grid.columns, *self._base)
        return self._prediction

    def predict_values(self, rows: Sequence[Mapping[str, Any]]) -> tuple[Prediction, dict[str, np.ndarray]]:
        """Prediction and the calibrated cost-model table for plans given as knob dicts (in the grid or not)."""
        if self._points < 0:
            self.refit([])
        cols = columns_of(self.setup.step, rows)
        table = self._table(cols)
        pred = self._apply(cols, np.log(table["samples_per_s"]), np.log(table["gpu_peak_bytes"]), table["fits_host"])
        return pred, table


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(values) ** 2)))
