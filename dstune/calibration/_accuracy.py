"""How good the fitted cost model is on published rows it was not fitted to.

- leave-one-out (time): refit the time constants without row i (warm-started from the full fit;
  the memory model, which decides the plan a source's rule picks, stays the full fit's), predict i;
- leave-one-source-out: refit memory and time without a whole source, predict its rows;
- memory: OOM calls right/wrong (prior, fitted, left out) and published peaks vs predicted.

Factors are exp(mean |log(predicted / published)|) and exp(max |log(...)|).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._fit import (
    GENERATION_ORDER,
    Fit,
    MemoryFact,
    Params,
    _memory_residuals,
    fact_right,
    fit_corpus,
    fit_memory,
    generation_of,
    memory_facts,
    predict_case,
    timed_cases,
)
from ._reproduce import Case, Choice, _score

Z90 = 1.645
"""Two-sided 90% interval of a normal in log space."""
SHRINK_ROWS = 3
"""A family's spread is pulled toward the corpus-wide spread as if by this many rows."""
NO_ROWS_WIDENING = 1.5
"""A GPU family with no published row gets this multiple of the corpus-wide log spread."""


@dataclass(frozen=True)
class RowResult:
    """One row: the published figure, and what the priors, the full fit and the left-out fits predict."""

    case: Case
    published_sps: float | None
    prior: Choice
    fitted: Choice
    left_out: Choice | None
    left_out_source: Choice | None
    left_out_fits: bool | None
    """The left-out fits / OOM call (memory refitted without this row where it mattered)."""


@dataclass(frozen=True)
class FamilyError:
    generation: str
    rows: int
    loo_rms_log: float
    loo_geo_factor: float
    interval_factor: float


@dataclass(frozen=True)
class Accuracy:
    fit: Fit
    rows: tuple[RowResult, ...]
    families: dict[str, FamilyError]
    no_rows_interval_factor: float

    def _timed(self) -> list[RowResult]:
        return [r for r in self.rows if r.published_sps and r.case.row.in_fit and r.left_out is not None]

    def log_errors(self, which: str) -> np.ndarray:
        rows = self._timed()
        return np.array([np.log(getattr(r, which).samples_per_s / r.published_sps) for r in rows])

    def factor(self, which: str, worst: bool = False) -> float:
        errors = np.abs(self.log_errors(which))
        return float(np.exp(errors.max() if worst else errors.mean()))

    def peaks(self) -> list[tuple[str, float, float, float]]:
        """(row id, published allocated GiB, prior's and fit's predicted allocated GiB) for rows with a
        published peak; predicted allocated: what torch's max_memory_allocated shows (no allocator overhead, no
        CUDA context)."""
        out = []
        for r in self.rows:
            if not r.case.row.peak_alloc_gib:
                continue
            figures = [choice.gpu_allocated_bytes / 2**30 for choice in (r.prior, r.fitted)]
            out.append((r.case.row.id, r.case.row.peak_alloc_gib, figures[0], figures[1]))
        return out

    def phase_times(self) -> list[tuple[str, str, float, float, float]]:
        """(row id, phases, published s, prior's and fit's predicted s) for published phase times."""
        out = []
        for r in self.rows:
            fitted_constants = self.fit.constants(generation_of(r.case.known_cluster.gpu.name))
            tables = (
                [
                    _score(r.case, [choice.plan], constants)
                    for choice, constants in ((r.prior, self.fit.prior), (r.fitted, fitted_constants))
                ]
                if r.case.row.phase_s
                else []
            )
            for phases, seconds in r.case.row.phase_s:
                prior, fitted = (sum(float(t[f"time_{p}"][0]) for p in phases) for t in tables)
                out.append((r.case.row.id, "+".join(phases), seconds, prior, fitted))
        return out

    def oom_calls(self, which: str) -> tuple[int, int]:
        """(right, wrong) fits / OOM calls against what the sources state or imply."""
        right = wrong = 0
        for r in self.rows:
            if which == "left_out":
                call = r.left_out_fits
                verdict = None if call is None or r.case.row.known_to_fit is None else call == r.case.row.known_to_fit
            else:
                verdict = fact_right(r.case, getattr(r, which))
            if verdict is not None:
                right, wrong = right + verdict, wrong + (not verdict)
        return right, wrong


def _family_errors(results: Sequence[RowResult]) -> tuple[dict[str, FamilyError], float]:
    errors = {
        r.case.row.id: np.log(r.left_out.samples_per_s / r.published_sps)
        for r in results
        if r.published_sps and r.case.row.in_fit and r.left_out is not None
    }
    all_ms = float(np.mean(np.square(list(errors.values())))) if errors else 0.25
    families = {}
    for gen in GENERATION_ORDER:
        mine = [
            errors[r.case.row.id]
            for r in results
            if r.case.row.id in errors and generation_of(r.case.known_cluster.gpu.name) == gen
        ]
        if not mine:
            continue
        ms = float(np.mean(np.square(mine)))
        shrunk = (len(mine) * ms + SHRINK_ROWS * all_ms) / (len(mine) + SHRINK_ROWS)
        families[gen] = FamilyError(
            gen,
            len(mine),
            float(np.sqrt(ms)),
            float(np.exp(np.mean(np.abs(mine)))),
            float(np.exp(Z90 * np.sqrt(shrunk))),
        )
    return families, float(np.exp(Z90 * NO_ROWS_WIDENING * np.sqrt(all_ms)))


def _loo_memory(facts: Sequence[MemoryFact], fit: Fit) -> dict[str, bool]:
    """Left-out fits calls: only facts with a non-zero residual at the full fit can move it when
    left out; for the others the left-out fit is the full fit (exactly)."""
    calls: dict[str, bool] = {}
    full = fit.memory.constants(fit.prior, None)
    for i, fact in enumerate(facts):
        if fact.fits is None:
            continue
        residual = _memory_residuals([fact], lambda case: full)
        memory = fit.memory
        if np.any(np.abs(residual) > 1e-9):
            memory = fit_memory([f for j, f in enumerate(facts) if j != i], fit.prior, start=fit.memory.x, max_nfev=10)
        left = Fit(memory=memory, time=fit.time, generations=fit.generations, prior=fit.prior)
        calls[fact.case.row.id] = predict_case(fact.case, left).fits
    return calls


def evaluate(
    cases: Sequence[Case], *, loo_nfev: int = 8, loso_nfev: int = 15, full_nfev: int = 40, progress=None
) -> Accuracy:
    """Fit on every usable row, then leave-one-out and leave-one-source-out."""
    usable = [c for c in cases if not c.skipped]
    fit = fit_corpus(usable, max_nfev=full_nfev)
    timed = timed_cases(usable)
    left_out: dict[str, Choice] = {}
    for i, case in enumerate(timed):
        rest = [c for c in usable if c is not case]
        partial = fit_corpus(rest, start=fit, max_nfev=loo_nfev, refit_memory=False)
        left_out[case.row.id] = predict_case(case, partial)
        if progress:
            progress(f"leave-one-out {i + 1}/{len(timed)}")
    by_source: dict[str, Choice] = {}
    for source in dict.fromkeys(c.row.source for c in usable):
        rest = [c for c in usable if c.row.source != source]
        partial = fit_corpus(rest, start=fit, max_nfev=loso_nfev)
        for case in usable:
            if case.row.source == source:
                by_source[case.row.id] = predict_case(case, partial)
        if progress:
            progress(f"leave-one-source-out {source}")
    facts = memory_facts([c for c in usable if c.row.in_fit])
    memory_calls = _loo_memory(facts, fit)
    results = []
    for case in cases:
        if case.skipped:
            continue
        fitted = predict_case(case, fit)
        results.append(
            RowResult(
                case=case,
                published_sps=case.row.measured_samples_per_s,
                prior=predict_case(case, None),
                fitted=fitted,
                left_out=left_out.get(case.row.id),
                left_out_source=by_source.get(case.row.id),
                left_out_fits=memory_calls.get(case.row.id, fitted.fits),
            )
        )
    families, no_rows = _family_errors(results)
    return Accuracy(fit=fit, rows=tuple(results), families=families, no_rows_interval_factor=no_rows)


__all__ = ["Accuracy", "FamilyError", "Params", "RowResult", "evaluate"]
