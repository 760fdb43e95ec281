"""The sampler table: its names, its error for an unknown one, and the samplers it builds."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import optuna
import pytest

from dstune.errors import UserInputError
from dstune.search import _samplers
from dstune.search._samplers import SAMPLERS, SamplerInputs, make_sampler


def _inputs(surrogate: Any = None) -> SamplerInputs:
    return SamplerInputs(
        grid=None,  # type: ignore[arg-type]  # Optuna's own samplers never read the grid
        surrogate=surrogate,
        allowed=np.ones(1, dtype=bool),
        observations=lambda study: ([], set(), None),
        seed=1,
    )


def test_the_names_and_their_order_stay() -> None:
    assert SAMPLERS == ("dstune", "prior", "tpe", "gp", "random", "grid", "autotuner")


def test_an_unknown_name_is_the_users_error() -> None:
    with pytest.raises(UserInputError, match="^unknown sampler 'cmaes'; choose one of dstune, prior, tpe, gp, random"):
        make_sampler("cmaes", _inputs())


@pytest.mark.parametrize(
    ("name", "kind"),
    [("tpe", optuna.samplers.TPESampler), ("gp", optuna.samplers.GPSampler), ("random", optuna.samplers.RandomSampler)],
)
def test_optunas_samplers_are_built_by_name(name: str, kind: type) -> None:
    assert isinstance(make_sampler(name, _inputs()), kind)


def test_prior_is_dstunes_sampler_with_learning_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_samplers, "SurrogateSampler", lambda *args, **kwargs: "surrogate sampler")
    surrogate = SimpleNamespace(learn=True)
    assert make_sampler("prior", _inputs(surrogate)) == "surrogate sampler"
    assert surrogate.learn is False
