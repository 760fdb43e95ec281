"""Where the cost model is wrong, by knob value: a Bayesian linear model of log(measured / predicted).

Features are an intercept and one indicator per (knob, value) of the searched space other than the
reference plan's (the first measured, the baseline in a study), so a single
measurement moves the prediction of every unmeasured plan that shares its knob values: measure one
Hybrid Engine plan far below its prediction and all Hybrid Engine plans come down with it, in
proportion to how much of the miss the other knobs (already measured at the baseline) cannot explain.
The intercept takes the miss every plan shares (e.g. a CPU far slower than the GPU the constants
describe). Closed form, exact from the first point; the spreads are picked by marginal likelihood
once there are enough points to tell them apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

INTERCEPT_SD = 2.0
"""Prior spread of the shared miss (log units): loose, the whole machine may be x5 off."""
KNOB_SD = 0.3
"""Prior spread of one knob value's own miss (~35%)."""
NOISE_SD = 0.3
"""Run-to-run spread of a measurement (log units) until the data can pick one: wide, as on a loaded
CPU, so one outlier does not overturn the prior; one clean miss still moves its knob value by ~half."""
_KNOB_SDS = (0.15, 0.3, 0.6)
_NOISE_SDS = (0.05, 0.1, 0.2, 0.4)
NOISE_DOF = 4.0
"""Degrees of freedom of the Student-t measurement noise (0: Gaussian). A loaded CPU now and then
measures a plan several times slower than its twin (the SFT table: ZeRO-1 and ZeRO-2 of one plan at
22.3 and 2.0 samples/s): under Gaussian noise one such row moves every plan sharing its knob value
by about half its miss; under t noise a lone miss far beyond the noise moves them less until another
row agrees with it. 4 is the usual robust default, not fitted to the tables."""
ROBUST_ITERATIONS = 12
CHOOSE_FROM = 6
"""Points before the spreads are chosen by marginal likelihood (fewer cannot tell noise from knobs)."""


class KnobResidual:
    """Posterior over per-knob-value corrections; predicts mean and standard deviation per plan."""

    def __init__(self, knobs: Mapping[str, Sequence[Any]], reference: Mapping[str, Any] | None = None):
        """`reference`: the plan whose knob values carry no correction of their own (the intercept's),
        so measuring a plan that differs from it in one knob corrects that knob's value alone."""
        ref = reference or {}
        self.levels = [(n, v) for n, values in knobs.items() for v in values if n not in ref or v != ref[n]]
        self.knob_sd, self.noise_sd = KNOB_SD, NOISE_SD
        self.mean = np.zeros(1 + len(self.levels))
        self.cov = np.diag(self._prior_var())

    def _prior_var(self) -> np.ndarray:
        return np.array([INTERCEPT_SD**2] + [self.knob_sd**2] * len(self.levels))

    def features(self, cols: Mapping[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(cols.values()))) if cols else 0
        x = np.ones((n, 1 + len(self.levels)))
        for j, (name, value) in enumerate(self.levels, 1):
            x[:, j] = np.asarray(cols[name]) == value if name in cols else 0.0
        return x

    def _posterior(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Posterior mean, covariance and log marginal likelihood under the current spreads, with
        Student-t measurement noise (EM: each point's noise variance is scaled by 1 / its weight)."""
        weights = np.ones(len(y))
        for _ in range(ROBUST_ITERATIONS if NOISE_DOF else 1):
            mean, cov, lml = self._gaussian(x, y, self.noise_sd**2 / weights)
            if not NOISE_DOF:
                break
            expected = (y - x @ mean) ** 2 + np.einsum("ij,jk,ik->i", x, cov, x)
            weights = (NOISE_DOF + 1.0) / (NOISE_DOF + expected / self.noise_sd**2)
        return mean, cov, lml

    def _gaussian(self, x: np.ndarray, y: np.ndarray, noise_var: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        prior = self._prior_var()
        k = (x * prior) @ x.T + np.diag(noise_var)
        chol = np.linalg.cholesky(k)
        alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, y))
        v = np.linalg.solve(chol, x * prior)
        lml = -0.5 * y @ alpha - np.log(np.diag(chol)).sum()
        return prior * (x.T @ alpha), np.diag(prior) - v.T @ v, float(lml)

    def fit(self, cols: Mapping[str, np.ndarray], y: np.ndarray) -> KnobResidual:
        x = self.features(cols)
        if len(y) == 0:
            self.mean, self.cov = np.zeros(x.shape[1]), np.diag(self._prior_var())
            return self
        choices = [(k, n) for k in _KNOB_SDS for n in _NOISE_SDS] if len(y) >= CHOOSE_FROM else [(KNOB_SD, NOISE_SD)]
        best = None
        for self.knob_sd, self.noise_sd in choices:
            mean, cov, lml = self._posterior(x, y)
            if best is None or lml > best[0]:
                best = (lml, self.knob_sd, self.noise_sd, mean, cov)
        assert best is not None
        _, self.knob_sd, self.noise_sd, self.mean, self.cov = best
        return self

    def predict(self, cols: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the correction (the true residual, not a noisy rerun of it)."""
        x = self.features(cols)
        var = np.einsum("ij,jk,ik->i", x, self.cov, x)
        return x @ self.mean, np.sqrt(np.maximum(var, 1e-6))
