"""Run OpenRLHF's own command-line parser on an argument list, without ray, vLLM or a GPU.

The released `openrlhf/cli/train_ppo_ray.py` builds its parser inline under `if __name__ == "__main__":`
and imports ray and vLLM at the top. This executes only that block's statements (the real
`add_argument` calls, `hierarchize` and the post-parse asserts) with `train` replaced by a function
that captures the parsed arguments. The sources come from the released wheel (a zip, read in place).
"""

from __future__ import annotations

import argparse
import ast
import builtins
import contextlib
import io
import types
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ...errors import UserInputError

ENTRY = "openrlhf/cli/train_ppo_ray.py"
CONFIG = "openrlhf/utils/config.py"
DS_UTILS = "openrlhf/utils/deepspeed/deepspeed_utils.py"


class ParserRejected(UserInputError):
    """OpenRLHF's parser or one of its post-parse checks refused the arguments."""


@dataclass(frozen=True)
class Parsed:
    values: dict[str, Any]
    """Dotted destination -> value after the post-parse checks and adjustments."""
    options: frozenset[str]
    """Every option string the parser defines (to refuse prefix abbreviations)."""
    printed: str
    """What the post-parse block printed (its warnings, e.g. sleep dropped without colocate_all)."""
    namespace: Any
    """The nested namespace `train(args)` receives."""


def find_wheel(version: str, folders: list[Path]) -> Path | None:
    for folder in folders:
        found = sorted(folder.glob(f"openrlhf-{version}-*.whl"))
        if found:
            return found[0]
    return None


def wheel_source(wheel: Path, inner: str) -> str:
    """A file of the wheel's purelib tree (wheels built with data dirs keep the package under it)."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.endswith(inner)]
        if not names:
            raise FileNotFoundError(f"{inner} not in {wheel.name}")
        return zf.read(min(names, key=len)).decode("utf-8")


def _main_block(tree: ast.Module) -> list[ast.stmt]:
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            left = node.test.left
            if isinstance(left, ast.Name) and left.id == "__name__":
                return node.body
    raise ValueError("no __main__ block in train_ppo_ray.py")


def run_parser(argv: list[str], entry_source: str, config_source: str) -> Parsed:
    """Parse `argv` as `python -m openrlhf.cli.train_ppo_ray argv` would, up to the call of train()."""
    config = types.ModuleType("openrlhf.utils.config")
    exec(compile(config_source, CONFIG, "exec"), config.__dict__)
    captured: dict[str, Any] = {}
    parsers: list[argparse.ArgumentParser] = []

    class _Parser(argparse.ArgumentParser):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            parsers.append(self)

        def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
            return super().parse_args(argv if args is None else args, namespace)

        def error(self, message: str) -> Any:
            raise ParserRejected(f"OpenRLHF's parser: {message}")

    fake_argparse = types.SimpleNamespace(**{**vars(argparse), "ArgumentParser": _Parser})
    real_import = builtins.__import__

    def _import(name: str, globals_: Any = None, locals_: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        if name == "openrlhf.utils.config":
            return config
        if name.startswith("modelscope"):
            raise ParserRejected("--use_ms needs modelscope, which a parse check does not load")
        return real_import(name, globals_, locals_, fromlist, level)

    def _train(args: Any) -> None:
        captured["args"] = args

    body = _main_block(ast.parse(entry_source, ENTRY))
    module = ast.Module(body=body, type_ignores=[])
    scope: dict[str, Any] = {
        "__builtins__": {**vars(builtins), "__import__": _import},
        "argparse": fake_argparse,
        "datetime": datetime,
        "os": __import__("os"),
        "train": _train,
    }
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(module, ENTRY, "exec"), scope)
    except AssertionError as error:
        raise ParserRejected(f"OpenRLHF's post-parse check: {error}") from None
    except (TypeError, AttributeError) as error:
        raise ParserRejected(f"OpenRLHF's post-parse checks fail with {type(error).__name__}: {error}") from None
    options = frozenset(o for p in parsers for a in p._actions for o in a.option_strings)
    return Parsed(_flatten(captured["args"]), options, printed.getvalue(), captured["args"])


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in vars(node).items():
        name = f"{prefix}{key}"
        if isinstance(value, types.SimpleNamespace):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def check_exact_flags(argv: list[str], options: frozenset[str]) -> None:
    """argparse accepts unique prefixes of long options; a launch script must spell every flag out."""
    for token in argv:
        if token.startswith("--") and token.split("=", 1)[0] not in options:
            raise ParserRejected(f"{token} is not one of OpenRLHF's options (only a prefix of one)")
