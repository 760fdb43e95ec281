"""Fit the cost model's constants to the evidence corpus and measure the error on rows left out.

Few free constants, each with a log-normal prior around dstune's defaults:
- per GPU generation (volta, ampere, ada, hopper; only those with rows): the achieved matmul
  fraction, the HBM fraction in decode, and the Hybrid Engine's per-layer decode cost;
- shared: link efficiency, the fixed per-step cost, the hidden size at which GEMMs run at half
  their best efficiency, the host's CPU-Adam rate (offload), and two host-side fixed costs: the
  generate() loop per token and ZeRO-3's fetch per layer;
- memory: allocator overhead and logits bytes while training. Layer activations are not fitted: they are
  measured on this stack (costmodel/data/activations.json), eager attention for the published rows.

Memory is fitted first, on the published peaks (torch's max allocated: predicted peak less the
CUDA context and allocator overhead) and on fits / does-not-fit facts (one-sided); the plans a
source's rule picks (largest batch that fits) then follow from the fitted memory model, and the
time constants are fitted by least squares on log(predicted / published) samples/s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..costmodel import DEFAULT_CONSTANTS, CostConstants
from ._reproduce import Case, Choice, _score, choose

GENERATIONS: dict[str, str] = {
    "V100-32G": "volta",
    "A100-40G": "ampere",
    "A100-80G": "ampere",
    "A6000": "ampere",
    "A10G": "ampere",
    "L40S": "ada",
    "RTX-4090": "ada",
    "H100-80G": "hopper",
    "H100-PCIe": "hopper",
    "H200": "hopper",
}
"""Catalog GPU -> architecture generation (CUDA compute capability 7.0, 8.0/8.6, 8.9, 9.0)."""
GENERATION_ORDER = ("volta", "ampere", "ada", "hopper")

GENERATION_CONSTANTS = ("matmul_efficiency_max", "hbm_efficiency", "decode_overhead_per_layer_s_he")
SHARED_CONSTANTS = (
    "link_efficiency",
    "step_overhead_s",
    "matmul_half_hidden",
    "cpu_adam_params_per_s",
    "decode_overhead_per_token_s",
    "zero3_fetch_overhead_s",
)
MEMORY_CONSTANTS = ("memory_overhead_fraction", "logits_bytes_per_element_train")
LINEAR_CONSTANTS: dict[str, tuple[float, float, float, float]] = {}
"""Constants fitted on a linear scale: (low, high, prior mean, prior sigma)."""
FRACTIONS = {"matmul_efficiency_max", "hbm_efficiency", "link_efficiency", "memory_overhead_fraction"}
PRIOR_SIGMA = 0.5
"""Prior spread of log(constant / default): a factor 1.65 either way at one sigma."""
PRIOR_SIGMAS = {
    "matmul_efficiency_max": 0.3,
    "hbm_efficiency": 0.3,
    "decode_overhead_per_layer_s_he": 1.0,
    "step_overhead_s": 1.0,
    "cpu_adam_params_per_s": 1.0,
    "decode_overhead_per_token_s": 1.0,
    "zero3_fetch_overhead_s": 1.0,
}
"""Achieved fractions of peak are known within ~35%; fixed overheads (launches, Python, hooks) and the host
CPU's Adam rate (cores, memory bandwidth) within 3x."""
GIB = 2.0**30


def generation_of(gpu_name: str) -> str | None:
    return GENERATIONS.get(gpu_name)


@dataclass(frozen=True)
class Params:
    """A point in the fitted space: names and values (log ratios to the prior, or linear values)."""

    names: tuple[str, ...]
    x: np.ndarray

    def constants(self, prior: CostConstants, generation: str | None) -> CostConstants:
        values = {}
        for name, value in zip(self.names, self.x):
            gen, _, constant = name.rpartition(":")
            if gen and gen != generation:
                continue
            if constant in LINEAR_CONSTANTS:
                values[constant] = float(value)
            else:
                values[constant] = getattr(prior, constant) * float(np.exp(value))
        return replace(prior, **values)


def _prior_x(names: Sequence[str], prior: CostConstants) -> np.ndarray:
    return np.array(
        [LINEAR_CONSTANTS[n.rpartition(":")[2]][2] if n.rpartition(":")[2] in LINEAR_CONSTANTS else 0.0 for n in names]
    )


def _bounds(names: Sequence[str], prior: CostConstants) -> tuple[np.ndarray, np.ndarray]:
    low, high = [], []
    for name in names:
        constant = name.rpartition(":")[2]
        if constant in LINEAR_CONSTANTS:
            lo, hi = LINEAR_CONSTANTS[constant][:2]
        else:
            lo = -3.0
            hi = float(np.log(0.98 / getattr(prior, constant))) if constant in FRACTIONS else 3.0
        low.append(lo)
        high.append(hi)
    return np.array(low), np.array(high)


def _prior_terms(names: Sequence[str], x: np.ndarray, x0: np.ndarray) -> np.ndarray:
    constants = [n.rpartition(":")[2] for n in names]
    sigma = np.array(
        [LINEAR_CONSTANTS[c][3] if c in LINEAR_CONSTANTS else PRIOR_SIGMAS.get(c, PRIOR_SIGMA) for c in constants]
    )
    return (x - x0) / sigma


def _least_squares(
    residual, names: tuple[str, ...], prior: CostConstants, start: np.ndarray | None, max_nfev: int
) -> np.ndarray:
    from scipy.optimize import least_squares

    x_prior = _prior_x(names, prior)
    low, high = _bounds(names, prior)
    x0 = np.clip(x_prior if start is None else start, low + 1e-9, high - 1e-9)

    def fun(x: np.ndarray) -> np.ndarray:
        return np.concatenate([residual(x), _prior_terms(names, x, x_prior)])

    return least_squares(fun, x0, bounds=(low, high), max_nfev=max_nfev, diff_step=1e-3).x


# ---------------------------------------------------------------- memory


@dataclass(frozen=True)
class MemoryFact:
    """What a case says about memory: a published allocated peak of its one plan, or whether it fits."""

    case: Case
    peak_alloc_bytes: float | None
    fits: bool | None


def memory_facts(cases: Sequence[Case]) -> list[MemoryFact]:
    """Peaks of stated plans, and fit facts of stated plans and max-model rows (Table 1 cells are
    implied to fit by some rung, which the offload rungs nearly always allow: not informative)."""
    found = []
    for case in cases:
        row = case.row
        informative = row.fits is not None or len(case.plans) == 1
        if row.peak_alloc_gib or (informative and row.known_to_fit is not None):
            found.append(MemoryFact(case, row.peak_alloc_gib * GIB if row.peak_alloc_gib else None, row.known_to_fit))
    return found


def _memory_residuals(facts: Sequence[MemoryFact], constants_of) -> np.ndarray:
    out = []
    for fact in facts:
        c = constants_of(fact.case)
        table = _score(fact.case, fact.case.plans, c)
        if fact.peak_alloc_bytes:
            allocated = table["gpu_allocated_bytes"][0]
            out.append(np.log(max(allocated, 1.0) / fact.peak_alloc_bytes))
        if fact.fits is not None:
            capacity = fact.case.known_cluster.gpu.memory_bytes
            smallest = float(np.min(table["gpu_peak_bytes"]))
            gap = np.log(smallest / capacity)
            out.append(max(gap, 0.0) if fact.fits else max(-gap, 0.0))
    return np.array(out)


def fit_memory(
    facts: Sequence[MemoryFact],
    prior: CostConstants = DEFAULT_CONSTANTS,
    *,
    start: np.ndarray | None = None,
    max_nfev: int = 40,
) -> Params:
    names = MEMORY_CONSTANTS

    def residual(x: np.ndarray) -> np.ndarray:
        p = Params(names, x)
        return _memory_residuals(facts, lambda case: p.constants(prior, None))

    return Params(names, _least_squares(residual, names, prior, start, max_nfev))


# ---------------------------------------------------------------- time


def time_names(generations: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"{g}:{c}" for g in generations for c in GENERATION_CONSTANTS) + SHARED_CONSTANTS


def _predict_time(
    cases: Sequence[Case], plans: Sequence, params: Params, base: CostConstants
) -> tuple[np.ndarray, np.ndarray]:
    """(samples/s per case, predicted / published for every published phase time, in case order)."""
    sps = np.empty(len(cases))
    phase_ratios: list[tuple[int, int, float]] = []
    constants = {}
    for i, (case, plan) in enumerate(zip(cases, plans)):
        gen = generation_of(case.known_cluster.gpu.name)
        if gen not in constants:
            constants[gen] = params.constants(base, gen)
        table = _score(case, [plan], constants[gen])
        sps[i] = table["samples_per_s"][0]
        for j, (phases, seconds) in enumerate(case.row.phase_s):
            predicted = sum(float(table[f"time_{p}"][0]) for p in phases)
            phase_ratios.append((i, j, predicted / seconds))
    return sps, np.array([r for _, _, r in phase_ratios])


def fit_time(
    cases: Sequence[Case],
    plans: Sequence,
    measured: np.ndarray,
    base: CostConstants,
    *,
    generations: Sequence[str],
    start: np.ndarray | None = None,
    max_nfev: int = 40,
) -> Params:
    """Least squares on log(predicted / published) samples/s, and on published phase times where a source
    gives them (they tell generation from training, which throughput alone cannot)."""
    names = time_names(generations)

    def residual(x: np.ndarray) -> np.ndarray:
        sps, phase_ratios = _predict_time(cases, plans, Params(names, x), base)
        return np.concatenate([np.log(sps / measured), np.log(phase_ratios)])

    return Params(names, _least_squares(residual, names, base, start, max_nfev))


# ---------------------------------------------------------------- the whole fit


@dataclass(frozen=True)
class Fit:
    """Fitted memory and time parameters, and the plans chosen under the fitted memory model."""

    memory: Params
    time: Params
    generations: tuple[str, ...]
    prior: CostConstants = DEFAULT_CONSTANTS

    def constants(self, generation: str | None) -> CostConstants:
        with_memory = self.memory.constants(self.prior, None)
        return self.time.constants(with_memory, generation)


def timed_cases(cases: Sequence[Case]) -> list[Case]:
    """Cases with a published throughput that count in the fit."""
    return [c for c in cases if not c.skipped and c.row.in_fit and c.row.measured_samples_per_s]


def fit_corpus(
    cases: Sequence[Case],
    prior: CostConstants = DEFAULT_CONSTANTS,
    *,
    start: Fit | None = None,
    max_nfev: int = 40,
    refit_memory: bool = True,
) -> Fit:
    """Memory first, then the source rules' plan choices under it, then time."""
    usable = [c for c in cases if not c.skipped and c.row.in_fit]
    if refit_memory or start is None:
        memory = fit_memory(memory_facts(usable), prior, start=start.memory.x if start else None, max_nfev=max_nfev)
    else:
        memory = start.memory
    base = memory.constants(prior, None)
    timed = timed_cases(usable)
    generations = tuple(g for g in GENERATION_ORDER if any(generation_of(c.known_cluster.gpu.name) == g for c in timed))
    plans = [choose(c, base).plan for c in timed]
    measured = np.array([c.row.measured_samples_per_s for c in timed])
    x0 = start.time.x if start is not None and start.generations == generations else None
    time = fit_time(timed, plans, measured, base, generations=generations, start=x0, max_nfev=max_nfev)
    return Fit(memory=memory, time=time, generations=generations, prior=prior)


def predict_case(case: Case, fit: Fit | None) -> Choice:
    if fit is None:
        return choose(case, DEFAULT_CONSTANTS)
    return choose(case, fit.constants(generation_of(case.known_cluster.gpu.name)))


def fact_right(case: Case, choice: Choice) -> bool | None:
    """Whether the predicted fits / OOM call agrees with what the source says (None: it says nothing)."""
    truth = case.row.known_to_fit
    return None if truth is None else choice.fits == truth
