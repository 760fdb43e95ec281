"""Which model plays the critic and reward roles for an actor, as DeepSpeed-Chat ships it."""

from __future__ import annotations

from dstune.catalog._model_lookup import load_model
from dstune.catalog._models import ModelSpec


def default_critic(model: ModelSpec) -> ModelSpec:
    """DeepSpeed-Chat pairs OPT actors with an OPT-350m critic/reward model; others with themselves."""
    if model.family == "opt" and model.num_params > load_model("opt-350m").num_params:
        return load_model("opt-350m")
    return model
