"""Analytic memory and time model of DeepSpeed-Chat steps, vectorised over candidate plans."""

from ._constants import DEFAULT_CONSTANTS, CostConstants
from ._estimate import GPU_COMPONENTS, CostInputs, estimate_table, plans_to_columns
from ._facts import ModelFacts, model_facts
from ._result import Estimate, estimate, row_to_estimate, trainable_params

__all__ = [
    "DEFAULT_CONSTANTS",
    "GPU_COMPONENTS",
    "CostConstants",
    "CostInputs",
    "Estimate",
    "ModelFacts",
    "estimate",
    "estimate_table",
    "model_facts",
    "plans_to_columns",
    "row_to_estimate",
    "trainable_params",
]
