"""What a target framework must provide, and nothing else (modeled on Optuna's BaseSampler: a few
abstract methods, and hooks with defaults, each documented).

A framework is one folder under dstune/frameworks/ whose `__init__` registers a `Framework` subclass
with `register_framework`. The CLI resolves `--framework` to that one instance, adds the flags its
options classes generate, and calls the command's method with the typed options; every output of the
command (terminal, `--json`, plan.json, report) renders the one record that method returns."""

from __future__ import annotations

import dataclasses
import inspect
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ..errors import UserInputError
from ._flags import flag

COMMANDS = ("estimate", "profile", "search")
"""The commands a framework answers; the others (models, gpus, report, compare, doctor) are shared."""


class CommandResult(Protocol):
    """One command's typed result: `--json` prints `to_json()`, the terminal shows `render()`."""

    @property
    def exit_code(self) -> int: ...

    def to_json(self) -> dict[str, Any]: ...

    def render(self) -> None: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class CommandOptions:
    """Options every framework command takes; a framework's options classes extend it."""

    model: str = flag(help="catalog name, Hugging Face id, or a local config dir/file")
    gpus: int = flag(help="total GPUs (world size)", parse=int)
    nodes: int | None = flag(None, help="nodes (default: whole nodes of the GPU type)", parse=int)
    gpu_type: str = flag("auto", help="catalog GPU (see 'dstune gpus'); auto detects local GPUs via NVML (default)")
    json: bool = flag(False, help="print one JSON object instead of tables")
    argv: tuple[str, ...] = ()
    """The command line as typed (checks that name a flag, and workers started with the same one)."""


class Framework(ABC):
    """A target RLHF trainer: its knobs, options, cost model, search and export.

    Class attributes name it; `options` maps each command it answers to its options class (a frozen
    dataclass of `flag` fields: the flags are generated from it)."""

    name: ClassVar[str]
    """The `--framework` value."""
    title: ClassVar[str]
    """How outputs name it."""
    supported_versions: ClassVar[tuple[str, ...]]
    """Releases whose flags and checks the plans and launch scripts follow."""
    options: ClassVar[dict[str, type[CommandOptions]]]
    """Command name -> its options class; a command left out is refused by `profile` (or the CLI)."""
    packages: ClassVar[tuple[str, ...]] = ()
    """Distributions this framework adds to a stack (doctor reports their installed versions)."""
    instead: ClassVar[dict[str, str]] = {}
    """Another framework's flag -> what to do instead here (said when that flag is given)."""
    knob_word: ClassVar[str] = "knob"
    """What its `--set` names are called in messages (OpenRLHF's are flags)."""

    @abstractmethod
    def knob_names(self) -> frozenset[str]:
        """Every name a `--set KNOB=VALUE` may give for this framework."""

    @abstractmethod
    def estimate(self, options: Any) -> CommandResult:
        """Predict one plan's memory and throughput with this framework's cost model."""

    @abstractmethod
    def search(self, options: Any) -> CommandResult:
        """Find the fastest plan that fits, write its export (`export`) and return the typed answer."""

    @abstractmethod
    def export(self, result: Any, out: Path) -> list[str]:
        """Write the launch files of a search's pick into `out`; returns the file names written."""

    def profile(self, options: Any) -> CommandResult:
        """Run one plan for real; by default refused in one line (no trial runner)."""
        raise UserInputError(f"{self.title} plans cannot be profiled yet: no trial runner for {self.title} in dstune")

    def doctor_findings(self, versions: dict[str, str | None]) -> list[tuple[str, str, str]]:
        """(topic, level, consequence) rows for `dstune doctor`; none by default."""
        return []

    def versions(self) -> dict[str, str | None]:
        """Installed versions of `packages`, from package metadata (nothing imported)."""
        from ..doctor import package_version

        return {name: package_version(name) for name in self.packages}

    def check_version(self, version: str | None) -> str | None:
        """None when `version` is supported (or unknown), else a sentence saying it is not."""
        if version is None or version in self.supported_versions:
            return None
        return f"{self.title} {version} is not a supported version ({', '.join(self.supported_versions)})"

    def describe(self, command: str) -> str:
        """The `--help` description of `command` under this framework; by default its docstring."""
        return inspect.cleandoc(getattr(type(self), command).__doc__ or "")
