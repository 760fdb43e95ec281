"""The shipped fit (data/evidence/fitted.json): constants per GPU, prediction intervals, and what backs them.

Written by `scripts/bench_accuracy.py --write` from the evidence corpus; it records the corpus
version it came from. Only fitted values are stored: they are applied over the cost model's
current defaults, so constants added later keep their defaults.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..costmodel import DEFAULT_CONSTANTS, CostConstants
from ._evidence import EVIDENCE_DIR, corpus_version, load_corpus
from ._fit import GENERATION_ORDER, generation_of

FITTED_FILE = EVIDENCE_DIR / "fitted.json"
SCHEMA_VERSION = 1
_PRETTY = {"volta": "V100", "ampere": "A100/A6000", "ada": "L40S/RTX-4090", "hopper": "H100/H200"}


@dataclass(frozen=True)
class GpuCalibration:
    """Fitted constants for one catalog GPU and how far to trust predictions made with them."""

    gpu: str
    generation: str | None
    """The GPU's own architecture generation (None: not in dstune's table)."""
    fitted_generation: str
    """The generation whose fitted constants are used."""
    fallback: bool
    """True when no published row is of this GPU's generation and the nearest one is used."""
    constants: CostConstants
    interval_factor: float
    """90% prediction interval: published/predicted lies within x/÷ this factor."""
    rows: int
    """Published rows the time constants were fitted on (all generations)."""
    generation_rows: int
    loo_factor: float | None
    """Leave-one-out geometric-mean error factor of this generation's rows (None when it has none)."""
    corpus_version: str
    stale: bool
    """The corpus changed since the fit was written (refit with scripts/bench_accuracy.py --write)."""
    step: str | None = None
    step_rows: int | None = None
    """Fitted rows of `step` (None: not asked). With none, the interval is the no-rows one: the
    step's cost terms were never held against a published measurement."""

    @property
    def backing(self) -> str:
        """One line: what backs a prediction for this GPU."""
        gen = _PRETTY.get(self.fitted_generation, self.fitted_generation)
        text = f"fitted on {self.rows} published rows ({self.generation_rows} {gen})"
        if self.fallback:
            text += f"; no published row of {self.gpu}'s generation, {gen} constants used"
        if self.loo_factor is not None:
            text += f"; {gen} leave-one-out error x{self.loo_factor:.2f}"
        if self.step_rows == 0:
            text += f"; no published {self.step} row, so the interval is the one for no rows"
        text += f"; 90% interval x/÷{self.interval_factor:.2f}"
        return text + (" (corpus changed since the fit)" if self.stale else "")


@functools.lru_cache(maxsize=1)
def load_fitted(path: Path = FITTED_FILE) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path} has schema_version {data.get('schema_version')}, expected {SCHEMA_VERSION}")
    return data


def _nearest(generation: str | None, fitted: list[str]) -> str:
    if generation in fitted:
        return generation
    rank = GENERATION_ORDER.index(generation) if generation in GENERATION_ORDER else len(GENERATION_ORDER) - 1
    return min(fitted, key=lambda g: (abs(GENERATION_ORDER.index(g) - rank), -GENERATION_ORDER.index(g)))


def calibration_for(
    gpu_name: str, *, step: str | None = None, base: CostConstants = DEFAULT_CONSTANTS
) -> GpuCalibration:
    """Fitted constants for a catalog GPU name (e.g. "A100-80G"), falling back to the nearest
    generation with published rows (flagged), with the interval factor and backing text; for a
    `step` no fitted row measured, the interval widens to the no-rows one (and the text says so)."""
    data = load_fitted()
    generations = data["generations"]
    own = generation_of(gpu_name)
    chosen = _nearest(own, list(generations))
    entry = generations[chosen]
    fallback = own != chosen
    step_rows = None if step is None else sum(row.in_fit and row.step == step for row in load_corpus())
    no_rows = fallback or step_rows == 0
    factor = data["no_rows_interval_factor"] if no_rows else entry["interval_factor"]
    return GpuCalibration(
        gpu=gpu_name,
        generation=own,
        fitted_generation=chosen,
        fallback=fallback,
        constants=_applied(base, entry["fitted_values"]),
        interval_factor=float(factor),
        rows=int(data["rows_fitted"]),
        generation_rows=int(entry["rows"]),
        loo_factor=None if fallback else float(entry["loo_geo_factor"]),
        corpus_version=data["corpus_version"],
        stale=data["corpus_version"] != corpus_version(),
        step=step,
        step_rows=step_rows,
    )


def _applied(base: CostConstants, values: dict[str, float]) -> CostConstants:
    """The fitted values over `base`; a value of a constant the cost model no longer has is dropped."""
    known = set(base.to_dict())
    return replace(base, **{k: v for k, v in values.items() if k in known})


def fitted_constants(gpu_name: str) -> tuple[CostConstants, bool]:
    """(constants, fallback) for a catalog GPU name."""
    c = calibration_for(gpu_name)
    return c.constants, c.fallback


def interval_factor(gpu_name: str) -> float:
    return calibration_for(gpu_name).interval_factor


def backing_text(gpu_name: str) -> str:
    return calibration_for(gpu_name).backing


def _choice_json(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    return {
        "samples_per_s": round(choice.samples_per_s, 6),
        "gpu_peak_gib": round(choice.gpu_peak_bytes / 2**30, 3),
        "fits": bool(choice.fits),
        "rung": choice.rung,
    }


def accuracy_to_json(accuracy: Any) -> dict[str, Any]:
    """The shipped record of a fit: fitted values per generation, error factors, and every row's predictions."""
    fit = accuracy.fit
    generations = {}
    for gen in fit.generations:
        constants = fit.constants(gen)
        names = [
            n.rpartition(":")[2]
            for n in fit.memory.names + fit.time.names
            if not n.rpartition(":")[0] or n.rpartition(":")[0] == gen
        ]
        family = accuracy.families.get(gen)
        generations[gen] = {
            "fitted_values": {n: float(getattr(constants, n)) for n in names},
            "rows": family.rows if family else 0,
            "loo_rms_log": family.loo_rms_log if family else None,
            "loo_geo_factor": family.loo_geo_factor if family else None,
            "interval_factor": family.interval_factor if family else accuracy.no_rows_interval_factor,
        }
    rows = []
    for r in accuracy.rows:
        rows.append(
            {
                "id": r.case.row.id,
                "source": r.case.row.source,
                "in_fit": r.case.row.in_fit,
                "published_samples_per_s": r.published_sps,
                "known_to_fit": r.case.row.known_to_fit,
                "prior": _choice_json(r.prior),
                "fitted": _choice_json(r.fitted),
                "left_out": _choice_json(r.left_out),
                "left_out_source": _choice_json(r.left_out_source),
                "left_out_fits": r.left_out_fits,
            }
        )
    return {
        "schema_version": SCHEMA_VERSION,
        "corpus_version": corpus_version(),
        "rows_fitted": len(accuracy._timed()),
        "generations": generations,
        "no_rows_interval_factor": accuracy.no_rows_interval_factor,
        "factors": {
            name: accuracy.factor(which, worst)
            for name, which, worst in (
                ("fit_geo_factor", "fitted", False),
                ("loo_geo_factor", "left_out", False),
                ("loo_worst_factor", "left_out", True),
                ("prior_geo_factor", "prior", False),
                ("prior_worst_factor", "prior", True),
                ("loso_geo_factor", "left_out_source", False),
            )
        },
        "oom_calls": {w: dict(zip(("right", "wrong"), accuracy.oom_calls(w))) for w in ("prior", "fitted", "left_out")},
        "prior_constants": {n: float(v) for n, v in fit.prior.to_dict().items()},
        "rows": rows,
    }


def write_fitted(accuracy: Any, path: Path = FITTED_FILE) -> Path:
    def plain(value: Any) -> Any:
        return float(value) if isinstance(value, np.floating) else bool(value) if isinstance(value, np.bool_) else value

    text = json.dumps(accuracy_to_json(accuracy), indent=1, default=plain)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)
    load_fitted.cache_clear()
    return path
