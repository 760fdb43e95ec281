"""One candidate's knobs, named exactly as DeepSpeed-Chat's flags.

Each step's knobs are a frozen dataclass its strategy owns (dstune.steps); defaults are
DeepSpeed-Chat's argparse defaults, so an empty plan is what a user gets by running that
step's main.py with no tuning flags.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any, ClassVar, Protocol, TypedDict


class Limits(TypedDict, total=False):
    """What `coerce_knob` checks a knob's value against (kept in the field's metadata)."""

    choices: tuple[Any, ...]
    min: int


ZERO: Limits = {"choices": (0, 1, 2, 3)}
DTYPE: Limits = {"choices": ("fp16", "bf16")}
POSITIVE: Limits = {"min": 1}
NON_NEGATIVE: Limits = {"min": 0}


def knob(default: Any, help: str, *, job: bool = False, **limits: Any) -> Any:
    """`job=True` marks a knob that defines what is trained (see _job.py), not how it runs."""
    return field(default=default, metadata={"help": help, "job": job, **limits})


class Plan(Protocol):
    """What every step's knob dataclass has; the rest is the strategy's business.

    Members are read-only (the dataclasses are frozen); `__dataclass_fields__` makes every plan a
    dataclass instance to `dataclasses.fields/replace/asdict`, and `__init__` takes the knobs by name."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
    step: ClassVar[str]

    def __init__(self, **knobs: Any) -> None: ...

    @property
    def dtype(self) -> str: ...

    @property
    def offload(self) -> bool: ...

    @property
    def only_optimize_lora(self) -> bool: ...

    @property
    def samples_per_step_per_gpu(self) -> int: ...

    @property
    def tokens_per_sample(self) -> int: ...


def plan_class(step: str) -> type[Plan]:
    from ._step import step_strategy

    return step_strategy(step).plan_class


def knob_fields(step: str) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(plan_class(step))


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return dataclasses.asdict(plan)
