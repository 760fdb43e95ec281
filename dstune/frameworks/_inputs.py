"""Checks of flag combinations argparse cannot express: repeats, options the command would ignore, paths."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserInputError

_SAME_OPTION = {"--no-he-kernels": "--he-kernels"}
"""Flags that set another flag's value: giving both is a conflict, as repeating one is."""


def check_argv(argv: list[str]) -> None:
    """Refuse a flag given twice and a knob set twice: argparse would keep the last value without a word."""
    flags = [_SAME_OPTION.get(t.split("=", 1)[0], t.split("=", 1)[0]) for t in argv if t.startswith("--")]
    repeated = [flag for flag, n in Counter(flags).items() if n > 1 and flag != "--set"]
    if repeated:
        raise UserInputError(f"{', '.join(repeated)} given more than once (or with its --no- form); pass it once")
    knobs = Counter(a.partition("=")[0].strip().replace("-", "_") for a in _set_values(argv))
    twice = [k for k, n in knobs.items() if n > 1 and k]
    if twice:
        raise UserInputError(f"--set {', '.join(twice)} given more than once; pass each knob once")


def _set_values(argv: list[str]) -> list[str]:
    values = []
    for i, token in enumerate(argv):
        if token == "--set" and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif token.startswith("--set="):
            values.append(token.split("=", 1)[1])
    return values


def check_out_folder(out: Path | None) -> None:
    """An output folder whose path runs through a regular file can never be created."""
    if out is None:
        return
    for part in (out, *out.parents):
        if part.exists():
            if not part.is_dir():
                raise UserInputError(f"--out '{out}': '{part}' is a file, not a folder")
            return


@contextmanager
def removed_unless_written(out: Path) -> Iterator[None]:
    """A command that stops on a user error or Ctrl-C before writing plan.json leaves no --out folder it
    created: an empty (or study.db-only) folder would look like a study that ran."""
    created = None if out.exists() else out  # the outermost folder this command would create
    while created is not None and not created.parent.exists() and created.parent != created:
        created = created.parent
    try:
        yield
    except (UserInputError, KeyboardInterrupt):
        if created is not None and created.is_dir() and not (out / "plan.json").exists():
            shutil.rmtree(created, ignore_errors=True)
        raise
