"""Reference strategies for the benchmark: DeepSpeed's autotuner policy as an Optuna sampler.

`AutotunerSampler` does what deepspeed/autotuning does for each ZeRO stage: keep every other
knob at the baseline's value and find the largest micro-batch that fits (largest first, stepping
down after an out-of-memory), then the next stage; when the stages are done it samples the
remaining candidates at random.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial

from ..plan import step_strategy
from ..record import Status
from ._grid import Grid
from ._sampler import distributions, finished
from ._space import as_python


class AutotunerSampler(BaseSampler):
    def __init__(
        self, grid: Grid, observations: Callable, *, allowed: np.ndarray | None = None, seed: int | None = None
    ):
        self.grid = grid
        self.allowed = np.ones(len(grid), dtype=bool) if allowed is None else allowed
        self._observations = observations
        self._rng = np.random.default_rng(seed)
        self._fallback = RandomSampler(seed=seed)
        strategy = step_strategy(grid.step)
        self.stage_knobs = strategy.zero_stage_knobs
        self.micro_knob = strategy.batch.micro

    def _tried(self, study: Study) -> dict[int, Status]:
        out = {}
        for trial in finished(study):
            values = trial.user_attrs.get("plan")
            if values and trial.user_attrs.get("status") not in (None, Status.INFEASIBLE):
                row = self.grid.find(values)
                if row is not None:
                    out[row] = Status(trial.user_attrs["status"])
        return out

    def _reference(self, study: Study) -> dict[str, Any]:
        for trial in finished(study):
            if trial.user_attrs.get("source") == "baseline":
                return dict(trial.user_attrs.get("plan", {}))
        return self.grid.values(0)

    def next_row(self, study: Study) -> int | None:
        tried = self._tried(study)
        cols = self.grid.columns
        ref = self._reference(study)
        others = [
            k
            for k in self.grid.space.varied
            if k not in self.stage_knobs and k != self.micro_knob and cols[k].dtype.kind != "U"
        ]
        match = self.allowed.copy()
        for k in others:
            if k in ref:
                match &= cols[k] == ref[k]
        stages = [k for k in self.stage_knobs if k in cols]
        same_stage = np.all([cols[k] == cols[stages[0]] for k in stages], axis=0)
        match &= same_stage
        for stage in sorted(np.unique(cols[stages[0]][match])):
            rows = np.flatnonzero(match & (cols[stages[0]] == stage))
            rows = rows[np.argsort(-cols[self.micro_knob][rows], kind="stable")]
            if any(tried.get(int(r)) == Status.OK for r in rows):
                continue
            for r in rows:
                if int(r) not in tried:
                    return int(r)
        left = np.flatnonzero(self.allowed & ~np.isin(np.arange(len(self.grid)), list(tried)))
        return int(self._rng.choice(left)) if len(left) else None

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {} if trial.user_attrs.get("source") == "baseline" else dict(distributions(self.grid))

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict:
        if not search_space:
            return {}
        row = self.next_row(study)
        return {} if row is None else {n: as_python(self.grid.columns[n][row]) for n in search_space}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)
