"""Fit the cost model's efficiency constants and memory overheads to measured trials.

Two layers, both refitted after every trial:
1. `fit_constants`: scipy.optimize.least_squares over log(constant / prior) to minimise
   log(measured / predicted) for throughput (time constants) and peak GPU memory
   (memory constants). A weak log-normal prior keeps the fit well posed with few points;
   out-of-memory trials add a one-sided term (the prediction should be at least the capacity).
2. `ResidualGP` (in _gp.py) over what remains, once there are enough points.

Data are plain `Observation` records read from trials (user attributes) and from the
CSV rows shipped in dstune/calibration/data, never pickles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..catalog import Setup
from ..costmodel import DEFAULT_CONSTANTS, CostConstants, estimate_table
from ..plan import knob_fields
from ..record import Status

TIME_CONSTANTS = (
    "matmul_efficiency_max",
    "hbm_efficiency",
    "link_efficiency",
    "host_link_efficiency",
    "decode_overhead_per_layer_s_native",
    "decode_overhead_per_layer_s_he",
    "step_overhead_s",
    "cpu_adam_params_per_s",
)
MEMORY_CONSTANTS = (
    "memory_overhead_fraction",
    "cuda_context_bytes",
    "logits_bytes_per_element_train",
    "logits_bytes_per_element_eval",
)
_FRACTIONS = {"matmul_efficiency_max", "hbm_efficiency", "link_efficiency", "host_link_efficiency"}
PRIOR_SIGMA = 10.0
"""Prior spread of log(constant / default): weak (it only breaks ties between constants the data cannot
tell apart), so a CPU (10^3 x slower than the defaults assume) can still be fitted."""


@dataclass(frozen=True)
class Observation:
    values: Mapping[str, Any]
    status: Status
    """ok or oom: what calibration learns from."""
    samples_per_s: float | None
    gpu_peak_bytes: float | None
    setup: Setup

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))


@dataclass(frozen=True)
class Calibration:
    constants: CostConstants
    points: int
    time_rms_before: float | None = None
    time_rms_after: float | None = None
    memory_rms_before: float | None = None
    memory_rms_after: float | None = None
    fitted: Mapping[str, float] = field(default_factory=dict)


def columns_of(step: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    return {f.name: np.array([row.get(f.name, f.default) for row in rows]) for f in knob_fields(step)}


def predict(observations: Sequence[Observation], constants: CostConstants) -> tuple[np.ndarray, np.ndarray]:
    """(samples/s, gpu peak bytes) the cost model predicts for each observation, grouped by setup."""
    sps = np.empty(len(observations))
    mem = np.empty(len(observations))
    groups: dict[int, list[int]] = {}
    for i, obs in enumerate(observations):
        groups.setdefault(id(obs.setup), []).append(i)
    for indices in groups.values():
        setup = observations[indices[0]].setup
        cols = columns_of(setup.step, [observations[i].values for i in indices])
        table = estimate_table(
            setup.step,
            cols,
            setup.model,
            setup.cluster,
            critic_model=setup.critic_model or setup.model,
            constants=constants,
        )
        sps[indices] = table["samples_per_s"]
        mem[indices] = table["gpu_peak_bytes"]
    return sps, mem


def _with(constants: CostConstants, names: Sequence[str], x: np.ndarray, prior: CostConstants) -> CostConstants:
    values = constants.to_dict()
    for name, log_ratio in zip(names, x):
        values[name] = getattr(prior, name) * float(np.exp(log_ratio))
    return CostConstants.from_dict(values)


def _bounds(names: Sequence[str], prior: CostConstants) -> tuple[np.ndarray, np.ndarray]:
    low = np.full(len(names), -12.0)
    high = np.array([np.log(0.98 / getattr(prior, n)) if n in _FRACTIONS else 12.0 for n in names])
    return low, high


def _rms(values: np.ndarray) -> float | None:
    return float(np.sqrt(np.mean(values**2))) if len(values) else None


def fit_constants(
    observations: Sequence[Observation],
    *,
    prior: CostConstants = DEFAULT_CONSTANTS,
    start: CostConstants | None = None,
    max_nfev: int = 60,
) -> Calibration:
    """Least squares over log(measured / predicted); returns the fitted constants and the RMS before/after."""
    from scipy.optimize import least_squares

    ok = [o for o in observations if o.status == Status.OK and o.samples_per_s and o.samples_per_s > 0]
    mem_ok = [o for o in ok if o.gpu_peak_bytes and o.gpu_peak_bytes > 0]
    ooms = [o for o in observations if o.status == Status.OOM]
    constants = start or prior
    if not ok and not ooms:
        return Calibration(constants=constants, points=0)

    def time_residuals(x: np.ndarray, names: Sequence[str]) -> np.ndarray:
        c = _with(constants, names, x, prior)
        sps, _ = predict(ok, c)
        measured = np.array([o.samples_per_s for o in ok])
        return np.concatenate([np.log(measured / sps), x / PRIOR_SIGMA])

    def memory_residuals(x: np.ndarray, names: Sequence[str]) -> np.ndarray:
        c = _with(constants, names, x, prior)
        parts = [x / PRIOR_SIGMA]
        if mem_ok:
            _, mem = predict(mem_ok, c)
            parts.append(np.log(np.array([o.gpu_peak_bytes for o in mem_ok]) / mem))
        if ooms:
            _, mem = predict(ooms, c)
            capacity = np.array([o.setup.cluster.gpu.memory_bytes for o in ooms])
            parts.append(np.maximum(np.log(capacity / mem), 0.0))
        return np.concatenate(parts)

    before_t = after_t = before_m = after_m = None
    fitted: dict[str, float] = {}
    start_values = start or prior
    for names, residuals, active in (
        (TIME_CONSTANTS, time_residuals, bool(ok)),
        (MEMORY_CONSTANTS, memory_residuals, bool(mem_ok or ooms)),
    ):
        if not active:
            continue
        x0 = np.array([np.log(getattr(start_values, n) / getattr(prior, n)) for n in names])
        low, high = _bounds(names, prior)
        x0 = np.clip(x0, low + 1e-9, high - 1e-9)
        r0 = residuals(x0, names)[len(names) :]
        result = least_squares(residuals, x0, bounds=(low, high), args=(names,), max_nfev=max_nfev, x_scale=1.0)
        constants = _with(constants, names, result.x, prior)
        r1 = residuals(result.x, names)[len(names) :]
        fitted.update({n: getattr(constants, n) for n in names})
        if names is TIME_CONSTANTS:
            before_t, after_t = _rms(r0), _rms(r1)
        else:
            before_m, after_m = _rms(r0), _rms(r1)
    return Calibration(
        constants=constants,
        points=len(ok) + len(ooms),
        time_rms_before=before_t,
        time_rms_after=after_t,
        memory_rms_before=before_m,
        memory_rms_after=after_m,
        fitted=fitted,
    )
