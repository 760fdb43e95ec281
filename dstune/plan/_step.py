"""A training step as a strategy: what the shared machinery asks of SFT, RM, PPO or DPO.

Grid, search, cost model, profiler, export and report never branch on a step's name:
they ask its `StepStrategy`. A strategy owns its knobs (a frozen dataclass named with
DeepSpeed-Chat's flags), how its global batch is made, which models it trains or holds
frozen, its hard rules and inert knobs, its DeepSpeed configs, its launch script and the
shipped scripts a study starts from. Its cost terms and its profile worker live in the
cost-model and profile layers (above this one in the import order), so a strategy names
them by import path and they are loaded when first asked for.

Built-in strategies live in `dstune.steps` and register themselves on import; `step_strategy`
imports that package the first time it is asked, the way a plugin registry loads entry points.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict

import numpy as np

from ..errors import UserInputError

if TYPE_CHECKING:
    from ..catalog import ModelSpec
    from ._inert import Inert
    from ._knobs import Plan
    from ._rules import Rule

Columns = Mapping[str, np.ndarray]


class CostTerms(TypedDict):
    """What a step's cost function returns, one value per candidate row (dstune.costmodel.estimate_table)."""

    memory: dict[str, np.ndarray]
    """GPU bytes by component at the peak phase, plus that phase's label under `peak_phase`."""
    host_peak_bytes: np.ndarray
    phases: dict[str, np.ndarray]
    """Seconds of each timed phase per step."""
    samples: np.ndarray
    tokens: np.ndarray
    flops: np.ndarray
    """Useful model FLOPs per step (for MFU)."""


DEFAULT_STEP = "ppo"
"""What `--step` means when it is not given: DeepSpeed-Chat's headline step."""


@dataclass(frozen=True)
class BatchShape:
    """How a step's per-device knobs make its global batch sizes.

    `figures[0]` = `micro` x `repeats` x world. A step that trains on micro-batches cut from
    a larger batch (PPO trains on generated experience) names them with `inner` and
    `inner_repeats`: `figures[1]` = min(`inner`, `micro`) x `inner_repeats` x world.
    """

    figures: tuple[str, ...]
    micro: str
    repeats: str
    inner: str | None = None
    inner_repeats: str | None = None

    @property
    def knobs(self) -> tuple[str, ...]:
        return tuple(k for k in (self.micro, self.inner, self.repeats, self.inner_repeats) if k)

    def columns(self, cols: Columns, world: int) -> dict[str, np.ndarray]:
        micro = cols[self.micro].astype(np.int64)
        out = {self.figures[0]: micro * cols[self.repeats].astype(np.int64) * world}
        if self.inner and self.inner_repeats:
            inner = np.minimum(cols[self.inner].astype(np.int64), micro)
            out[self.figures[1]] = inner * cols[self.inner_repeats].astype(np.int64) * world
        return out


@dataclass(frozen=True)
class LoraRole:
    """One trained model's LoRA knobs: `rank` 0 means full fine-tuning of that model."""

    role: str
    rank: str
    module: str
    model: str
    """Which model of the setup it adapts: "actor" or "critic"."""


@dataclass(frozen=True)
class BaselineScript:
    """One shipped DeepSpeed-Chat launch script: its path under the step's training_scripts/,
    the model size it was written for, and the knobs it sets (the rest are main.py defaults)."""

    path: str
    billions: float
    values: Mapping[str, Any]


@dataclass(frozen=True)
class ScriptSpec:
    """What a step's launch script needs besides the plan's flags."""

    name: str
    """Exported file name, e.g. run_step3.sh."""
    folder: str
    """DeepSpeed-Chat's training/<folder>/ holding main.py and training_scripts/."""
    always: tuple[str, ...]
    """Flags written even at main.py's default, so the script reads on its own."""


class StepStrategy(ABC):
    """Base class of a training step. Subclasses set the class attributes and implement the abstract
    hooks; registering one that misses a hook fails at import, not when a search first asks it."""

    name: ClassVar[str]
    title: ClassVar[str]
    plan_class: ClassVar[type[Plan]]
    batch: ClassVar[BatchShape]
    sequence_knobs: ClassVar[tuple[str, ...]]
    """Knobs whose sum is the tokens of one sequence (the model's position limit)."""
    lora_roles: ClassVar[tuple[LoraRole, ...]]
    zero_stage_knobs: ClassVar[tuple[str, ...]]
    """ZeRO stages of the trained models (the micro-batch knob's twin in the search's heuristics)."""
    phases: ClassVar[tuple[str, ...]]
    """Timed phases, in order: the cost model predicts and the profiler measures these names."""
    config_files: ClassVar[Mapping[str, str]]
    """DeepSpeed config role -> exported file name."""
    script: ClassVar[ScriptSpec]
    uses_critic: ClassVar[bool] = False
    """Whether a second model (critic and reward) is part of the setup."""
    uses_hybrid_engine: ClassVar[bool] = False
    sample_unit: ClassVar[str] = "samples"
    cost_function: ClassVar[str]
    """`module:function` taking a `dstune.costmodel.CostInputs` (a column table of plans) and
    returning its `CostTerms` (see dstune.costmodel.estimate_table)."""
    worker_class: ClassVar[str]
    """`module:class` running one real step in a profile worker."""

    def rules(self) -> tuple[Rule[Any], ...]:
        """Hard rules of this step on top of the shared ones."""
        return ()

    def inert(self) -> tuple[Inert, ...]:
        """Knobs with no effect under other knobs' values (see _inert.py)."""
        return ()

    @abstractmethod
    def deepspeed_configs(self, plan: Any, world_size: int) -> dict[str, dict[str, Any]]:
        """Role -> the DeepSpeed config DeepSpeed-Chat's main.py builds for this plan."""

    def sizes_label(self, values: Mapping[str, Any], batches: Mapping[str, int]) -> str:
        """The job's batch and sequence sizes in words, e.g. '32 pairs/step, 512 tokens'."""
        first = self.batch.figures[0]
        tokens = "+".join(str(values[k]) for k in self.sequence_knobs)
        return f"{batches[first]} {self.sample_unit}/step, {tokens} tokens"

    @abstractmethod
    def baseline_scripts(self, family: str, world: int) -> tuple[BaselineScript, ...]:
        """The shipped scripts for this model family and layout, nearest size chosen by the caller."""

    def adjust_baseline(self, values: dict[str, Any], world: int, notes: list[str]) -> None:
        """Make a shipped script's values valid on `world` GPUs, noting every change (by default
        they already are: only PPO's Hybrid Engine TP size depends on the GPU count)."""
        return None

    def lora_module_defaults(self, family: str, critic_family: str | None) -> dict[str, str]:
        """DeepSpeed-Chat's LoRA module-name substring per trained model (OPT nests layers under decoder)."""
        families = {"actor": family, "critic": critic_family or family}
        return {r.module: lora_module_for(families[r.model]) for r in self.lora_roles}

    @abstractmethod
    def script_models(
        self, hub_id: Callable[[ModelSpec], str], model: ModelSpec, critic: ModelSpec | None
    ) -> tuple[list[str], list[str]]:
        """(shell lines before the launch, main.py arguments naming data and models)."""

    def cost(self) -> Callable[..., CostTerms]:
        return _load(self.cost_function)

    def worker(self) -> type:
        return _load(self.worker_class)


def lora_module_for(family: str) -> str:
    return "decoder.layers." if family == "opt" else "layers."


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


_REGISTRY: dict[str, StepStrategy] = {}


def register_step(strategy: type[StepStrategy]) -> type[StepStrategy]:
    """Class decorator: make a strategy available by its name."""
    if strategy.plan_class.step != strategy.name:
        raise TypeError(f"{strategy.__name__}: plan class step {strategy.plan_class.step!r} != {strategy.name!r}")
    _REGISTRY[strategy.name] = strategy()
    return strategy


def _ensure_loaded() -> None:
    if not _REGISTRY:
        importlib.import_module("dstune.steps")


def step_names() -> tuple[str, ...]:
    _ensure_loaded()
    return tuple(_REGISTRY)


def step_strategy(name: str) -> StepStrategy:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserInputError(f"unknown step {name!r}; choose one of {', '.join(_REGISTRY)}") from None
