"""Search spaces: a YAML file of knob candidates, fixed workload and batch policy -> a typed SearchSpace.

A space file looks like::

    step: ppo
    critic_model: opt-350m          # optional (PPO); --critic-model wins
    workload:                        # knobs held fixed (the work being measured)
      max_prompt_seq_len: 256
      max_answer_seq_len: 256
    batch:
      policy: baseline               # the baseline's global batch (default); fixed_global_batch; token_cap
      # global_batch: 256            # fixed_global_batch: prompts per PPO iteration / samples per step
      # update_batch: 64             # PPO only: samples per optimizer step
      # max_tokens: 524288           # token_cap: samples/step x tokens/sample <= this (DeepSpeed-Chat's
                                     #   benchmark method: the largest batch that fits)
    knobs:                           # searched knobs: candidate values (system knobs: the job stays fixed)
      actor_zero_stage: [2, 3]
    ties:                            # knob: other knob whose value it copies
      per_device_training_batch_size: per_device_generation_batch_size
    explore:                         # ways to widen the search to other jobs (--explore lora,batch)
      lora:
        knobs: {actor_lora_dim: [0, 8, 128], only_optimize_lora: [false, true]}
      batch:
        batch: {policy: token_cap, max_tokens: 524288}

Knobs that define the job (LoRA, ppo_epochs, sequence lengths, dtype) and are neither
listed nor fixed take the baseline's values, so by default every candidate trains
exactly what the baseline trains.

The hard rules are not in the file: they live once in `dstune.plan` and the
grid asks `violations()` for each distinct rule-relevant combination.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError
from ..plan import knob_fields, step_names, step_strategy, unknown_knob_error
from ..plan._parse import coerce_knob


def _spaces_dir() -> Path:
    """The repository's search_spaces/ (source or editable install), else the copy a wheel
    installs under <prefix>/share/dstune/search_spaces (pyproject's data-files)."""
    in_repo = Path(__file__).resolve().parents[2] / "search_spaces"
    return in_repo if in_repo.is_dir() else Path(sys.prefix) / "share" / "dstune" / "search_spaces"


SPACES_DIR = _spaces_dir()

MAX_GRID = 2_000_000
_TOP_KEYS = {"step", "description", "critic_model", "workload", "batch", "knobs", "ties", "explore"}
_POLICIES = ("baseline", "fixed_global_batch", "token_cap")
EXPLORE_OPTIONS = ("lora", "batch")


@dataclass(frozen=True, kw_only=True)
class BatchPolicy:
    """How much work one step does: the baseline's global batch, a fixed one, or free batches under a token cap."""

    policy: str = "baseline"
    max_tokens: int | None = None
    """token_cap: samples per step (all GPUs) x tokens per sample <= max_tokens (DeepSpeed-Chat's 1024 x 512)."""
    global_batch: int | None = None
    """fixed_global_batch: samples per step over all GPUs; accumulation (SFT/RM) or generation_batches
    (PPO) is derived from the micro-batch so the algorithm is unchanged."""
    update_batch: int | None = None
    """fixed_global_batch, PPO: samples per optimizer step; derives gradient_accumulation_steps."""


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """Typed content of a space file."""

    path: str
    step: str
    knobs: Mapping[str, tuple[Any, ...]]
    """Searched knobs and their candidate values (a knob with one value is fixed)."""
    fixed: Mapping[str, Any] = field(default_factory=dict)
    ties: Mapping[str, str] = field(default_factory=dict)
    batch: BatchPolicy = field(default_factory=BatchPolicy)
    critic_model: str | None = None
    description: str = ""
    pinned: tuple[str, ...] = ()
    """Knobs fixed by the user (--set), as opposed to the file's workload."""
    explore: Mapping[str, ExploreOption] = field(default_factory=dict)
    """Named ways to widen the search to other jobs (`--explore NAME,...`)."""
    explored: tuple[str, ...] = ()
    """The explore options applied."""

    @property
    def workload(self) -> dict[str, Any]:
        """The file's fixed workload (what the baseline must share), without --set pins."""
        return {k: v for k, v in self.fixed.items() if k not in self.pinned}

    @property
    def varied(self) -> tuple[str, ...]:
        """Knobs with more than one candidate: the Optuna parameters."""
        return tuple(name for name, values in self.knobs.items() if len(values) > 1)

    def with_fixed(self, values: Mapping[str, Any]) -> SearchSpace:
        """Pin knobs (from --set): they leave `knobs` and join `fixed`."""
        fields = {f.name: f for f in knob_fields(self.step)}
        knobs, fixed = dict(self.knobs), dict(self.fixed)
        for name, value in values.items():
            if name not in fields:
                raise unknown_knob_error(self.step, name)
            knobs.pop(name, None)
            fixed[name] = coerce_knob(fields[name], value)
            if name in self.ties:
                raise UserInputError(f"--set {name}: {self.path} ties it to {self.ties[name]}; set that instead")
        return dataclasses.replace(self, knobs=knobs, fixed=fixed, pinned=self.pinned + tuple(values))

    def widen(self, names: Sequence[str]) -> SearchSpace:
        """Apply explore options: their knobs join the searched knobs, their batch policy replaces the file's."""
        knobs, fixed, batch = dict(self.knobs), dict(self.fixed), self.batch
        for name in names:
            if name not in self.explore:
                offered = ", ".join(self.explore) or "none"
                raise UserInputError(f"--explore {name}: {self.path} offers no such option (offers: {offered})")
            option = self.explore[name]
            for knob, values in option.knobs.items():
                if knob in self.pinned:
                    raise UserInputError(f"--explore {name} varies {knob}, which --set fixes; drop one of them")
                fixed.pop(knob, None)
                knobs[knob] = values
            batch = option.batch or batch
        return dataclasses.replace(self, knobs=knobs, fixed=fixed, batch=batch, explored=self.explored + tuple(names))

    def size(self) -> int:
        return int(np.prod([len(v) for v in self.knobs.values()], dtype=np.int64)) if self.knobs else 1


@dataclass(frozen=True, kw_only=True)
class ExploreOption:
    """One way to widen a search beyond the baseline's job."""

    knobs: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    batch: BatchPolicy | None = None


def shown_path(path: str | Path) -> str:
    """A space file's path as files and reports show it: shipped spaces as search_spaces/NAME, others
    relative to the working directory where they are under it, so no machine's absolute path leaks."""
    p = Path(path)
    try:
        return f"search_spaces/{p.resolve().relative_to(SPACES_DIR.resolve())}"
    except ValueError:
        pass
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def default_space_path(step: str, model_name: str) -> Path:
    """search_spaces/<step>.yaml, or the tiny-<step>.yaml CPU space for tiny-* models."""
    tiny = SPACES_DIR / f"tiny-{step}.yaml"
    if model_name.startswith("tiny-") and tiny.exists():
        return tiny
    return SPACES_DIR / f"{step}.yaml"


def load_space(path: str | Path, step: str | None = None) -> SearchSpace:
    """Read and check a space file; every error names the file and the key."""
    path = Path(path)
    where = str(path)
    raw = _read_yaml(path, where)
    file_step = _file_step(raw, step, where)
    check = _KnobCheck(file_step, where)
    fixed = {}
    for name, value in _mapping(raw, "workload", where).items():
        fixed[name] = check.coerce(f"workload.{name}", name, value)
    knobs = _knobs(raw, fixed, check)
    ties = _ties(raw, knobs, fixed, check)
    explore = _explore(raw, check)
    return SearchSpace(
        path=where,
        step=file_step,
        knobs=knobs,
        fixed=fixed,
        ties=ties,
        batch=_batch_policy(raw.get("batch"), file_step, where),
        critic_model=raw.get("critic_model"),
        description=str(raw.get("description", "")),
        explore=explore,
    )


def _read_yaml(path: Path, where: str) -> dict:
    """The file's top-level mapping; a missing or unreadable file, bad YAML or an unknown top key is the
    user's to fix, so each is one line naming the file."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserInputError(f"search space {where} not found") from None
    except OSError as error:
        raise UserInputError(f"search space {where}: cannot read: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise UserInputError(f"search space {where}: not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise UserInputError(f"search space {where}: expected a mapping at the top level")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise UserInputError(
            f"search space {where}: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(_TOP_KEYS))}"
        )
    return raw


def _file_step(raw: dict, step: str | None, where: str) -> str:
    """The training step the file is for (its 'step', else --step): it decides which knobs exist, and a file
    written for another step than the one asked for is refused rather than read with the wrong knobs."""
    file_step = raw.get("step", step)
    if file_step not in step_names():
        raise UserInputError(
            f"search space {where}: key 'step' must be one of {', '.join(step_names())}, got {file_step!r}"
        )
    if step is not None and file_step != step:
        raise UserInputError(f"search space {where}: key 'step' is {file_step!r} but --step is {step!r}")
    return str(file_step)


class _KnobCheck:
    """Knob names and values of one step, checked against its plan fields, each error naming the file and
    the key it came from (the coercion's own message gains the key when it lacks one)."""

    def __init__(self, step: str, where: str) -> None:
        self.step, self.where = step, where
        self.fields = {f.name: f for f in knob_fields(step)}

    def knob(self, section: str, name: str) -> Any:
        if name not in self.fields:
            raise UserInputError(
                f"search space {self.where}: key '{section}.{name}': {unknown_knob_error(self.step, name)}"
            )
        return self.fields[name]

    def coerce(self, section: str, name: str, value: Any) -> Any:
        try:
            return coerce_knob(self.knob(section, name), value)
        except UserInputError as error:
            if str(error).startswith("search space"):
                raise
            raise UserInputError(f"search space {self.where}: key '{section}': {error}") from None


def _knobs(raw: dict, fixed: Mapping[str, Any], check: _KnobCheck) -> dict[str, tuple[Any, ...]]:
    """The searched knobs' candidate values, typed and without repeats; a knob cannot be both searched and
    fixed, since the file would then say two things about it."""
    where = check.where
    knobs: dict[str, tuple[Any, ...]] = {}
    for name, values in _mapping(raw, "knobs", where).items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise UserInputError(f"search space {where}: key 'knobs.{name}' has no candidate values")
        typed = [check.coerce(f"knobs.{name}[{i}]", name, v) for i, v in enumerate(values)]
        knobs[name] = tuple(dict.fromkeys(typed))
        if name in fixed:
            raise UserInputError(f"search space {where}: key 'knobs.{name}' is also fixed under 'workload'")
    return knobs


def _ties(raw: dict, knobs: Mapping[str, Any], fixed: Mapping[str, Any], check: _KnobCheck) -> dict[str, str]:
    """Knobs that take another knob's value: both must be knobs of the step, and a tied knob is not also
    searched or fixed (its value comes from its source)."""
    ties = {}
    for name, source in _mapping(raw, "ties", check.where).items():
        check.knob("ties", name)
        check.knob(f"ties.{name}", str(source))
        if name in knobs or name in fixed:
            raise UserInputError(f"search space {check.where}: key 'ties.{name}': a tied knob cannot also be listed")
        ties[name] = str(source)
    return ties


def _explore(raw: dict, check: _KnobCheck) -> dict[str, ExploreOption]:
    """The `--explore` options: extra knob values and/or another batch policy each, typed like the rest."""
    where = check.where
    explore = {}
    for name, option in _mapping(raw, "explore", where).items():
        if not isinstance(option, dict) or set(option) - {"knobs", "batch"}:
            raise UserInputError(
                f"search space {where}: key 'explore.{name}' must be a mapping with 'knobs' and/or 'batch'"
            )
        extra = {}
        for knob_name, values in (option.get("knobs") or {}).items():
            values = values if isinstance(values, list) else [values]
            typed = [check.coerce(f"explore.{name}.knobs.{knob_name}[{i}]", knob_name, v) for i, v in enumerate(values)]
            extra[knob_name] = tuple(dict.fromkeys(typed))
        batch = _batch_policy(option["batch"], check.step, where) if option.get("batch") else None
        explore[str(name)] = ExploreOption(knobs=extra, batch=batch)
    return explore


def _mapping(raw: dict, key: str, where: str) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise UserInputError(f"search space {where}: key '{key}' must be a mapping")
    return value


def _batch_policy(raw: Any, step: str, where: str) -> BatchPolicy:
    if raw is None:
        return BatchPolicy()
    if not isinstance(raw, dict):
        raise UserInputError(f"search space {where}: key 'batch' must be a mapping")
    allowed = {"policy", "max_tokens", "global_batch", "update_batch"}
    unknown = set(raw) - allowed
    if unknown:
        raise UserInputError(
            f"search space {where}: unknown key 'batch.{sorted(unknown)[0]}'; allowed: {', '.join(sorted(allowed))}"
        )
    implied = "token_cap" if "max_tokens" in raw else "fixed_global_batch" if "global_batch" in raw else "baseline"
    policy = raw.get("policy", implied)
    if policy not in _POLICIES:
        raise UserInputError(
            f"search space {where}: key 'batch.policy' must be one of {', '.join(_POLICIES)}, got {policy!r}"
        )
    values = {}
    for key in ("max_tokens", "global_batch", "update_batch"):
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UserInputError(f"search space {where}: key 'batch.{key}' must be a positive integer, got {value!r}")
        values[key] = value
    if policy == "fixed_global_batch" and values["global_batch"] is None:
        raise UserInputError(f"search space {where}: key 'batch.global_batch' is required by fixed_global_batch")
    if policy == "token_cap" and values["max_tokens"] is None:
        values["max_tokens"] = 1024 * 512
    if values["update_batch"] is not None and step_strategy(step).batch.inner is None:
        raise UserInputError(
            f"search space {where}: key 'batch.update_batch' applies to steps that train on "
            f"experience (ppo), not {step}"
        )
    return BatchPolicy(policy=policy, **values)


def plan_key(plan_values: Mapping[str, Any]) -> str:
    """Canonical text of a plan's knobs: the identity of a candidate across runs."""
    return json.dumps({k: plan_values[k] for k in sorted(plan_values)}, sort_keys=True, default=str)


def as_python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def lora_defaults(step: str, family: str, critic_family: str | None = None) -> dict[str, str]:
    return step_strategy(step).lora_module_defaults(family, critic_family)


__all__ = [
    "shown_path",
    "EXPLORE_OPTIONS",
    "BatchPolicy",
    "ExploreOption",
    "SPACES_DIR",
    "SearchSpace",
    "as_python",
    "default_space_path",
    "load_space",
    "lora_defaults",
    "plan_key",
]
