"""Command-line flags generated from a frozen options dataclass, as vLLM's EngineArgs does: an option's
name, type, default and help are written once, on its field, and argparse and the typed options both
come from there.

Why not a library: argparse is what the rest of the CLI (and its one-line errors) is built on; the few
lines here only read `dataclasses.fields`, so no second parser is worth a dependency."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
_KEY = "dstune_flag"


@dataclasses.dataclass(frozen=True)
class Flag:
    help: str
    name: str | None = None
    """The flag as typed; None: `--` and the field's name with dashes."""
    parse: Callable[[str], Any] | None = None
    """Text to value (argparse's `type`); applied to a text default too."""
    choices: Sequence[str] | None = None
    metavar: str | None = None
    repeat: bool = False
    """May be given more than once; the field holds a tuple of the values."""
    also: tuple[tuple[str, Any, str], ...] = ()
    """Shorthand flags (name, value stored, help), e.g. --no-he-kernels for --he-kernels no."""


def flag(default: Any = dataclasses.MISSING, **spec: Any) -> Any:
    """A dataclass field that is also a command-line flag (no default: a required flag)."""
    return dataclasses.field(default=default, metadata={_KEY: Flag(**spec)})


def flag_name(field: dataclasses.Field[Any]) -> str | None:
    spec = field.metadata.get(_KEY)
    return None if spec is None else spec.name or "--" + field.name.replace("_", "-")


def flag_names(options: type) -> tuple[str, ...]:
    """Every flag an options class generates, shorthands included."""
    names = []
    for field in dataclasses.fields(options):
        spec = field.metadata.get(_KEY)
        if spec is not None:
            names.append(flag_name(field))
            names.extend(name for name, _, _ in spec.also)
    return tuple(n for n in names if n)


def add_flags(parser: argparse.ArgumentParser, options: type) -> None:
    """One argparse option per flagged field of `options`, in field order."""
    for field in dataclasses.fields(options):
        spec: Flag | None = field.metadata.get(_KEY)
        if spec is None:
            continue
        kwargs: dict[str, Any] = {"dest": field.name, "help": spec.help}
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        if field.type in (bool, "bool"):
            kwargs["action"] = "store_true"
        else:
            if spec.repeat:
                kwargs["action"] = "append"
            if spec.parse is not None:
                kwargs["type"] = spec.parse
            for key in ("choices", "metavar"):
                if getattr(spec, key) is not None:
                    kwargs[key] = getattr(spec, key)
            if spec.name and spec.metavar is None and spec.choices is None:
                kwargs["metavar"] = spec.name.lstrip("-").upper().replace("-", "_")
        if required:
            kwargs["required"] = True
        else:
            kwargs["default"] = [] if spec.repeat else field.default
        parser.add_argument(str(flag_name(field)), **kwargs)
        for name, value, text in spec.also:
            parser.add_argument(name, dest=field.name, action="store_const", const=value, help=text)


def options_from(options: type[T], args: argparse.Namespace, **extra: Any) -> T:
    """The typed options of parsed `args` (repeated flags as tuples); `extra` fills unflagged fields."""
    values = dict(extra)
    for field in dataclasses.fields(options):  # type: ignore[arg-type]
        if field.metadata.get(_KEY) is None or not hasattr(args, field.name):
            continue
        value = getattr(args, field.name)
        values[field.name] = tuple(value) if isinstance(value, list) else value
    return options(**values)
