"""`dstune search` (being built)."""

from __future__ import annotations

import argparse

from ..errors import UserInputError
from ._command import Command


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER)


def _run(args: argparse.Namespace) -> int:
    raise UserInputError("'dstune search' is not available in this build")


COMMAND = Command("search", "(not available in this build)", _arguments, _run)
