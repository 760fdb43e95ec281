"""Command line: parse, call one library function, print. Exit 2 with one line for user errors.

The `dstune` program's entry point imports nothing heavy before it can catch Ctrl-C: the parser and
every subcommand (numpy, the catalog, ...) load inside `entry`, so an interrupt while they load is
one line and exit 130, not a traceback.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from typing import Any

INTERRUPTED_EXIT = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (see dstune.cli._main.main)."""
    from ._main import main as run

    return run(argv)


def build_parser() -> Any:
    from ._main import build_parser as build

    return build()


def entry() -> None:
    """The `dstune` program: once main has written its files and chosen its exit code, a late Ctrl-C
    (while the interpreter shuts down) must not turn a whole export into an interrupted exit."""
    try:
        code = main()
    except KeyboardInterrupt:  # while the subcommands were still importing: nothing started or written
        print("dstune: interrupted", file=sys.stderr)
        code = INTERRUPTED_EXIT
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


__all__ = ["build_parser", "entry", "main"]
