"""The cost model's shared terms, public: what a framework's own cost model (dstune.frameworks.<name>)
builds on. Memory terms are bytes per GPU, time terms seconds, each vectorised over a column of plans;
DeepSpeed-Chat's step costs (costmodel._sft, _ppo, _dpo) use the same functions."""

from ._constants import DEFAULT_CONSTANTS, CostConstants
from ._facts import ModelFacts, model_facts
from ._memory import (
    BYTES_16BIT,
    States,
    eval_activation_bytes,
    frozen_states,
    train_activation_bytes,
    trained_states,
    zero3_gathered_bytes,
    zero12_reduce_bucket_bytes,
)
from ._time import (
    Hardware,
    allgather_seconds,
    compute_seconds,
    forward_flops,
    optimizer_step_seconds,
    overlapped,
    tp_allreduce_seconds,
    train_backward_factor,
    zero3_fetch_seconds,
)

__all__ = [
    "BYTES_16BIT",
    "DEFAULT_CONSTANTS",
    "CostConstants",
    "Hardware",
    "ModelFacts",
    "States",
    "allgather_seconds",
    "compute_seconds",
    "eval_activation_bytes",
    "forward_flops",
    "frozen_states",
    "model_facts",
    "optimizer_step_seconds",
    "overlapped",
    "tp_allreduce_seconds",
    "train_activation_bytes",
    "train_backward_factor",
    "trained_states",
    "zero12_reduce_bucket_bytes",
    "zero3_fetch_seconds",
    "zero3_gathered_bytes",
]
