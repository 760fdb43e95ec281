"""dstune's Optuna sampler: propose the candidate with the best expected gain that is likely to fit.

Every proposal scores all remaining grid candidates with the calibrated model
(`Surrogate`, refitted on the study's trials first):

    acquisition = EI(log samples/s over the best feasible so far) x P(peak <= cap)

EI takes the spread every plan shares, so with the same reference for every plan it walks down the
calibrated ranking: the cost model's first ranking until a measurement corrects it, never a detour
to the plans least like those measured. The reference is the best measured plan, and the best of a
plan's own job class only when the study was asked for a pick per job (`--explore`).

Candidates already evaluated (by key, so reruns of a study do not repeat them)
and candidates with P(fit) below `prune_below` are never proposed: a plan the
model is confident will not fit costs no real trial.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial

from ..record import Status
from ._calibrate import Observation
from ._grid import Grid
from ._space import as_python
from ._surrogate import Surrogate

PRUNE_BELOW = 0.02
"""P(fit) under which a candidate is called confidently infeasible."""


def log_expected_improvement(mu: np.ndarray, sd: np.ndarray, best: np.ndarray | float) -> np.ndarray:
    """log EI, exact where EI itself underflows. `best`: the incumbent, one for all rows or one per row.
    Once measurements have narrowed the spread, every plan left may sit many spreads below the
    incumbent: EI is then below 1e-12 everywhere and the proposal was decided by the tie-break."""
    from scipy.special import erfcx, log_ndtr  # scipy: 2.7 s to import; a simulated search never asks

    z = (mu - best) / sd
    log_pdf = -0.5 * z**2 - 0.5 * np.log(2 * np.pi)
    # z Phi(z) + phi(z) = phi(z) (1 + z Phi(z) / phi(z)), with Phi(z) / phi(z) = sqrt(pi / 2) erfcx(-z / sqrt 2)
    ratio = np.sqrt(np.pi / 2) * erfcx(-z / np.sqrt(2))
    below = log_pdf + np.log(np.maximum(1.0 + z * ratio, 1e-300))
    above = log_ndtr(z) + np.log(np.maximum(z, 0.0) + np.exp(log_pdf - log_ndtr(z)))
    return np.log(sd) + np.where(z < 0, below, above)


def distributions(grid: Grid) -> dict[str, CategoricalDistribution]:
    return {name: CategoricalDistribution([as_python(v) for v in grid.space.knobs[name]]) for name in grid.space.varied}


class SurrogateSampler(BaseSampler):
    """Optuna sampler over a finite candidate grid, driven by the calibrated cost model."""

    def __init__(
        self,
        grid: Grid,
        surrogate: Surrogate,
        observations: Callable[[Study], tuple[list[Observation], set[str], float | None]],
        *,
        prune_below: float = PRUNE_BELOW,
        allowed: np.ndarray | None = None,
        seed: int | None = None,
    ):
        self.grid = grid
        self.surrogate = surrogate
        self._observations = observations
        self.prune_below = prune_below
        self.allowed = np.ones(len(grid), dtype=bool) if allowed is None else allowed
        self._rng = np.random.default_rng(seed)
        self._fallback = RandomSampler(seed=seed)
        self._keys: dict[str, int | None] | None = None
        self._classes: np.ndarray | None = None
        self.last_note = ""

    # -- what is left -----------------------------------------------------------------------------
    def _seen_mask(self, seen: set[str]) -> np.ndarray:
        """Rows whose plan key was already tried (keys are plan_key JSON, so they parse back to knobs)."""
        if self._keys is None:
            self._keys = {}
        mask = np.zeros(len(self.grid), dtype=bool)
        for key in seen:
            if key not in self._keys:
                self._keys[key] = self.grid.find(json.loads(key)) if key else None
            if self._keys[key] is not None:
                mask[self._keys[key]] = True
        return mask

    def candidates(self, study: Study) -> tuple[np.ndarray, float | None]:
        """Mask of rows still worth a trial, and the best feasible log throughput so far."""
        own, seen, best = self._observations(study)
        self.surrogate.refit(own)
        pred = self.surrogate.predict_grid()
        running = getattr(self._observations, "running", None)
        self._running = running(study) if running else {}
        fresh = ~self._seen_mask(seen | set(self._running))
        return fresh & self.allowed & (pred.p_fit >= self.prune_below), best

    def _job_classes(self, study: Study) -> np.ndarray:
        """Job class of every grid row: each class is searched against its own best, so a study that
        spans several training jobs (--explore) finds a pick for each, not only for the fastest job."""
        if self._classes is None:
            from ._pick import grid_classes

            base = next(
                (t.user_attrs.get("plan") for t in finished(study) if t.user_attrs.get("source") == "baseline"), None
            ) or self.grid.values(0)
            self._classes, _ = grid_classes(
                self.grid.step, self.grid.columns, self.surrogate.setup.cluster.world_size, base
            )
        return self._classes

    def _references(self, study: Study, mu: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Per row: the best feasible log throughput measured (with nothing measured, the best prediction).
        Under --explore, the best of the row's own job class where that class was measured, so each job
        gets a pick; without it, a class measured below the incumbent must not pull trials towards
        itself merely because its own best is low (the study's pick is the fastest plan of all)."""
        classes = self._job_classes(study) if self.grid.space.explored else np.zeros(len(mu), dtype=np.int64)
        own, _, _ = self._observations(study)
        cap = self.surrogate.cap_bytes
        best: dict[int, float] = {}
        for obs in own:
            if obs.status != Status.OK or not obs.samples_per_s or (obs.gpu_peak_bytes or 0.0) > cap:
                continue
            row = self.grid.find(obs.values)
            if row is not None:
                c = int(classes[row])
                best[c] = max(best.get(c, -np.inf), float(np.log(obs.samples_per_s)))
        for key, sps in getattr(self, "_running", {}).items():  # constant liar: a running plan counts as
            row = self.grid.find(json.loads(key))  # measured at its prediction
            if row is not None and sps > 0:
                c = int(classes[row])
                best[c] = max(best.get(c, -np.inf), float(np.log(sps)))
        incumbent = max(best.values()) if best else float(mu[mask].max() if mask.any() else mu.max())
        reference = np.full(len(mu), incumbent)
        for c, value in best.items():
            reference[classes == c] = value
        return reference

    def propose(self, study: Study) -> int | None:
        mask, best = self.candidates(study)
        if not mask.any():
            self.last_note = "no candidate left that is predicted to fit"
            return None
        pred = self.surrogate.predict_grid()
        mu, sd = pred.log_sps, np.full(len(pred.log_sps), pred.sd_shared)
        reference = self._references(study, mu, mask)
        with np.errstate(divide="ignore"):
            score = log_expected_improvement(mu, sd, reference) + np.log(pred.p_fit)
        score = np.where(mask, score + 1e-12 * self._rng.random(len(score)), -np.inf)
        row = int(np.argmax(score))
        self.last_note = (
            f"EI x P(fit) = {np.exp(score[row]):.3g}, P(fit) {pred.p_fit[row]:.2f}, "
            f"predicted {np.exp(mu[row]):.4g} samples/s (+/- {pred.sd_sps[row]:.0%})"
        )
        return row

    # -- Optuna interface ----------------------------------------------------------------------------
    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if trial.user_attrs.get("source") == "baseline" or trial.params:
            return {}
        return dict(distributions(self.grid))

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        row = self.propose(study)
        if row is None:
            return {}
        return {name: as_python(self.grid.columns[name][row]) for name in search_space}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)


def finished(study: Study) -> Sequence[FrozenTrial]:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=states)
