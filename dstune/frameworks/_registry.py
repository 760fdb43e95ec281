"""The framework registry: each built-in framework's folder registers itself on import, and the CLI
resolves `--framework` here; nothing asks for a framework by a literal name."""

from __future__ import annotations

import importlib

from ..errors import UserInputError
from ._base import Framework
from ._flags import flag_names

DEFAULT_FRAMEWORK = "deepspeed-chat"

BUILT_IN = ("dstune.frameworks.deepspeed_chat", "dstune.frameworks.openrlhf")
"""Folders imported on first use; another registers by being imported: a test's, or an installed
package's named under the `dstune.frameworks` entry-point group (see `load_plugins`)."""
PLUGIN_GROUP = "dstune.frameworks"

_REGISTRY: dict[str, Framework] = {}
_loaded = False


def register_framework(framework: type[Framework]) -> type[Framework]:
    """Class decorator: one instance per framework, under its `name`."""
    _REGISTRY[framework.name] = framework()
    return framework


def load_plugins() -> tuple[str, ...]:
    """Import every installed package's framework module (entry-point group `dstune.frameworks`, e.g.
    `[project.entry-points."dstune.frameworks"] verl = "dstune_verl"`); returns the modules loaded."""
    from importlib.metadata import entry_points

    loaded = []
    for entry in entry_points(group=PLUGIN_GROUP):
        importlib.import_module(entry.value.partition(":")[0])
        loaded.append(entry.value)
    return tuple(loaded)


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    for module in BUILT_IN:
        importlib.import_module(module)
    load_plugins()
    _loaded = True


def framework_names() -> tuple[str, ...]:
    """The default first, then the others by name."""
    _ensure_loaded()
    return (DEFAULT_FRAMEWORK, *sorted(n for n in _REGISTRY if n != DEFAULT_FRAMEWORK))


def get_framework(name: str) -> Framework:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserInputError(f"unknown framework {name!r}; choose one of {', '.join(framework_names())}") from None


def frameworks() -> tuple[Framework, ...]:
    return tuple(get_framework(n) for n in framework_names())


def foreign_option(framework: Framework, command: str, option: str) -> str | None:
    """A one-line refusal when `option` is another framework's flag for `command`, else None."""
    for other in frameworks():
        if other is framework or command not in other.options:
            continue
        if option in flag_names(other.options[command]):
            hint = framework.instead.get(option) or (
                f"add --framework {other.name}"
                if other.name != DEFAULT_FRAMEWORK
                else f"see 'dstune {command} --framework {framework.name} --help'"
            )
            return f"{option} is {_a(other.title)} option, not {_a(framework.title)} one; {hint}"
    return None


def check_knobs(framework: Framework, assignments: tuple[str, ...]) -> None:
    """Refuse, in one line, a `--set` name that is another framework's knob and not this one's."""
    own = framework.knob_names()
    for text in assignments:
        key = text.partition("=")[0].strip()
        if key in own or key.replace("-", "_") in own:
            continue
        for other in frameworks():
            if other is not framework and (key in other.knob_names() or key.replace("-", "_") in other.knob_names()):
                raise UserInputError(
                    f"{key} is {_a(other.title)} {other.knob_word}, not {_a(framework.title)} {framework.knob_word}"
                    + (f"; add --framework {other.name}" if other.name != DEFAULT_FRAMEWORK else "")
                )


def _a(title: str) -> str:
    return ("an " if title[0] in "AEIOU" else "a ") + title
