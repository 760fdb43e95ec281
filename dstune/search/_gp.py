"""A small exact Gaussian process (RBF kernel) for log(measured / predicted) residuals.

Hand-written in numpy on purpose: the residual model sees tens of points, so an
exact GP is a few lines of linear algebra, and it spares dstune a scikit-learn
(or GPyTorch) dependency. Hyperparameters are picked by log marginal likelihood
over a small grid of length scales and noise levels.
"""

from __future__ import annotations

import numpy as np

_LENGTHS = (0.25, 0.5, 1.0, 2.0)
_NOISES = (0.02, 0.08)
"""Noise standard deviations in log units (2% and 8% run-to-run spread)."""


class ResidualGP:
    """Zero-mean-after-centering GP on standardised features; predicts mean and standard deviation."""

    def __init__(self) -> None:
        self.x: np.ndarray | None = None
        self.alpha: np.ndarray | None = None
        self.chol: np.ndarray | None = None
        self.mean = 0.0
        self.signal = 0.0
        self.length = 1.0
        self.noise = 0.05

    def _kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return self.signal**2 * np.exp(-0.5 * np.maximum(d2, 0.0) / self.length**2)

    def fit(self, x: np.ndarray, y: np.ndarray, min_signal: float = 0.05) -> ResidualGP:
        self.mean = float(np.mean(y))
        centred = y - self.mean
        self.signal = max(float(np.std(centred)), min_signal)
        scale = np.sqrt(x.shape[1])
        best: tuple[float, float, float, np.ndarray, np.ndarray] | None = None
        for length in _LENGTHS:
            for noise in _NOISES:
                self.length, self.noise = length * scale, noise
                k = self._kernel(x, x) + noise**2 * np.eye(len(x))
                try:
                    chol = np.linalg.cholesky(k)
                except np.linalg.LinAlgError:
                    continue
                alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, centred))
                lml = -0.5 * centred @ alpha - np.log(np.diag(chol)).sum()
                if best is None or lml > best[0]:
                    best = (lml, length * scale, noise, chol, alpha)
        if best is None:
            raise np.linalg.LinAlgError(
                "residual GP: the kernel is not positive definite at any length scale and noise"
            )
        _, self.length, self.noise, self.chol, self.alpha = best
        self.x = x
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.x is None or self.chol is None or self.alpha is None:  # not fitted (fit sets all three)
            return np.zeros(len(x)), np.full(len(x), self.signal)
        ks = self._kernel(x, self.x)
        mean = self.mean + ks @ self.alpha
        v = np.linalg.solve(self.chol, ks.T)
        var = np.maximum(self.signal**2 - (v * v).sum(0), 1e-6) + self.noise**2
        return mean, np.sqrt(var)
