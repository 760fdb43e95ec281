"""The parser and `main`: every subcommand registered, user errors as one line and exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from typing import NoReturn

from .. import __version__
from ..errors import UserInputError
from ..frameworks._common import json_stdout
from . import _catalog, _dispatch, _doctor, _report

SHARED_COMMANDS = (_catalog.MODELS, _catalog.GPUS)
LAST_COMMANDS = (_report.REPORT, _report.COMPARE, _doctor.COMMAND)


class _OneLineParser(argparse.ArgumentParser):
    """A user's mistake on the command line is one line on stderr and exit 2, like every other
    user error here; argparse's default prints the whole usage block first."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The whole parser; estimate, profile and search carry the flags of the framework argv names."""
    parser = _OneLineParser(
        prog="dstune",
        description="Benchmark and auto-tune RLHF (SFT / reward model / PPO) throughput on DeepSpeed.",
    )
    parser.add_argument("--version", action="version", version=f"dstune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in SHARED_COMMANDS:
        command.register(sub)
    _dispatch.register(sub, _dispatch.chosen_framework(argv))
    for command in LAST_COMMANDS:
        command.register(sub)
    return parser


def _wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False)) or "json" in (getattr(args, "formats", None) or ())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args, extras = parser.parse_known_args(argv)
    if extras and not getattr(args, "framework_command", False):
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    args.argv = argv
    try:
        with json_stdout() if _wants_json(args) else nullcontext():
            if extras:
                _dispatch.refuse_extras(_dispatch.chosen_framework(argv), args.command, extras)
            return int(args.run(args) or 0)
    except UserInputError as error:
        print(f"dstune {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dstune {args.command}: interrupted", file=sys.stderr)
        return 130
