"""`dstune report` and `dstune compare` (being built)."""

from __future__ import annotations

import argparse

from ..errors import UserInputError
from ._command import Command


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER)


def _run(args: argparse.Namespace) -> int:
    raise UserInputError(f"'dstune {args.command}' is not available in this build")


REPORT = Command("report", "(not available in this build)", _arguments, _run)
COMPARE = Command("compare", "(not available in this build)", _arguments, _run)
