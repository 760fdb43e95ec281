"""The framework registry, beside the step registry (dstune.plan._step): a framework names its knobs
and the versions it supports, and the machinery asks it instead of branching on its name."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from ..errors import UserInputError

DEFAULT_FRAMEWORK = "deepspeed-chat"


class FrameworkStrategy(ABC):
    name: ClassVar[str]
    title: ClassVar[str]
    supported_versions: ClassVar[tuple[str, ...]]
    cost_function: ClassVar[str] = ""
    """`module:function` scoring a list of plans (an upper layer, named by path as step strategies do);
    empty for DeepSpeed-Chat, whose steps name their own."""
    export_function: ClassVar[str] = ""
    """`module:function` writing a plan's launch script; empty for DeepSpeed-Chat (its steps' scripts)."""

    def cost(self) -> Callable[..., Any]:
        return _load(self.cost_function)

    def exporter(self) -> Callable[..., Any]:
        return _load(self.export_function)

    @abstractmethod
    def knob_names(self) -> frozenset[str]:
        """Every knob a `--set` may name for this framework."""

    packages: ClassVar[tuple[str, ...]] = ()
    """Distributions this framework adds to a stack (doctor reports their installed versions)."""

    def versions(self) -> dict[str, str | None]:
        """Installed versions of `packages`, from package metadata (nothing imported)."""
        from ..doctor import package_version

        return {name: package_version(name) for name in self.packages}

    def doctor_findings(self, versions: dict[str, str | None]) -> list[tuple[str, str, str]]:
        """(topic, level, consequence) for `dstune doctor`; none by default."""
        return []

    def check_version(self, version: str | None) -> str | None:
        """None when `version` is supported (or unknown), else a sentence saying it is not."""
        if version is None or version in self.supported_versions:
            return None
        return f"{self.title} {version} is not a supported version ({', '.join(self.supported_versions)})"


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    if not module:
        raise TypeError("this framework names no function here: its steps do")
    return getattr(importlib.import_module(module), attr)


_REGISTRY: dict[str, FrameworkStrategy] = {}


def register_framework(strategy: type[FrameworkStrategy]) -> type[FrameworkStrategy]:
    _REGISTRY[strategy.name] = strategy()
    return strategy


BUILT_IN = ("dstune.frameworks.deepspeed_chat", "dstune.frameworks.openrlhf")


def _ensure_loaded() -> None:
    """Import every built-in framework (imports are idempotent; one may already be loaded on its own)."""
    for module in BUILT_IN:
        importlib.import_module(module)


def framework_names() -> tuple[str, ...]:
    """The default first, then the others by name."""
    _ensure_loaded()
    return (DEFAULT_FRAMEWORK, *sorted(n for n in _REGISTRY if n != DEFAULT_FRAMEWORK))


def framework_strategy(name: str) -> FrameworkStrategy:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserInputError(f"unknown framework {name!r}; choose one of {', '.join(_REGISTRY)}") from None
