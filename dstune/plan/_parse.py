"""Turn user-supplied knob values (CLI strings, YAML scalars) into a typed plan."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import UserInputError
from ._knobs import Plan, knob_fields, plan_class

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def describe_knob(f: dataclasses.Field) -> str:
    """What a knob accepts, for error messages and `--help`."""
    meta = f.metadata
    if "choices" in meta:
        return "one of " + ", ".join(str(c) for c in meta["choices"])
    kind = _kind(f)
    if kind is bool:
        return "true or false"
    if kind is int:
        return f"an integer >= {meta.get('min', 0)}"
    return "a string"


def _kind(f: dataclasses.Field) -> type:
    return type(f.default)


def coerce_knob(f: dataclasses.Field, value: Any) -> Any:
    """Convert and range-check one value; the error names the knob and what it accepts."""
    kind = _kind(f)
    bad = UserInputError(f"knob {f.name}={value} is invalid: it takes {describe_knob(f)}")
    if kind is bool:
        if isinstance(value, bool):
            converted: Any = value
        elif str(value).strip().lower() in _TRUE:
            converted = True
        elif str(value).strip().lower() in _FALSE:
            converted = False
        else:
            raise bad
    elif kind is int:
        if isinstance(value, bool):
            raise bad
        try:
            converted = int(str(value).strip()) if not isinstance(value, int) else value
        except ValueError:
            raise bad from None
        if converted < f.metadata.get("min", converted):
            raise bad
    else:
        converted = str(value)
        if not converted:
            raise bad
    choices = f.metadata.get("choices")
    if choices is not None and converted not in choices:
        raise bad
    return converted


def unknown_knob_error(step: str, name: str) -> UserInputError:
    names = [f.name for f in knob_fields(step)]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; {step} knobs: {', '.join(names)}"
    return UserInputError(f"unknown {step} knob {name!r}{hint}")


def make_plan(step: str, values: Mapping[str, Any] | None = None, base: Plan | None = None) -> Plan:
    """Build a plan for `step` from DeepSpeed-Chat defaults (or `base`) plus `values`."""
    cls = plan_class(step)
    fields = {f.name: f for f in knob_fields(step)}
    typed: dict[str, Any] = {}
    for name, value in (values or {}).items():
        if name not in fields:
            raise unknown_knob_error(step, name)
        typed[name] = coerce_knob(fields[name], value)
    if base is not None:
        return dataclasses.replace(base, **typed)
    return cls(**typed)


def parse_assignments(step: str, assignments: Iterable[str]) -> dict[str, str]:
    """Split `knob=value` strings from `--set`, refusing malformed ones."""
    parsed: dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise UserInputError(f"--set expects knob=value, got {item!r}")
        parsed[name] = value.strip()
    return parsed
