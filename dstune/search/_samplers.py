"""The samplers a search may name: one factory per name, so a new sampler is one entry in the table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UserInputError
from ._calibrate import Observation
from ._grid import Grid
from ._sampler import SurrogateSampler, distributions
from ._surrogate import Surrogate


@dataclass(frozen=True)
class SamplerInputs:
    """What any sampler may be built from; each factory takes what it needs."""

    grid: Grid
    surrogate: Surrogate
    allowed: np.ndarray
    observations: Callable[[Any], tuple[list[Observation], set[str], float | None]]
    seed: int | None


def _dstune(inputs: SamplerInputs) -> Any:
    return SurrogateSampler(
        inputs.grid, inputs.surrogate, inputs.observations, allowed=inputs.allowed, seed=inputs.seed
    )


def _prior(inputs: SamplerInputs) -> Any:
    """Learning off: the cost model's first ranking, walked down by EI."""
    inputs.surrogate.learn = False
    return _dstune(inputs)


def _tpe(inputs: SamplerInputs) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=inputs.seed)


def _gp(inputs: SamplerInputs) -> Any:
    import optuna

    return optuna.samplers.GPSampler(seed=inputs.seed, warn_independent_sampling=False)


def _random(inputs: SamplerInputs) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=inputs.seed)


def _grid(inputs: SamplerInputs) -> Any:
    import optuna

    space = {n: list(d.choices) for n, d in distributions(inputs.grid).items()}
    return optuna.samplers.GridSampler(space, seed=inputs.seed)


def _autotuner(inputs: SamplerInputs) -> Any:
    from ._strategies import AutotunerSampler

    return AutotunerSampler(inputs.grid, inputs.observations, allowed=inputs.allowed, seed=inputs.seed)


FACTORIES: dict[str, Callable[[SamplerInputs], Any]] = {
    "dstune": _dstune,
    "prior": _prior,
    "tpe": _tpe,
    "gp": _gp,
    "random": _random,
    "grid": _grid,
    "autotuner": _autotuner,
}
SAMPLERS = tuple(FACTORIES)


def make_sampler(name: str, inputs: SamplerInputs) -> Any:
    """The named sampler; an unknown name is the user's error."""
    factory = FACTORIES.get(name)
    if factory is None:
        raise UserInputError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return factory(inputs)
