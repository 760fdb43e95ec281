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
from ..frameworks.deepspeed_chat import _estimate, _profile, _search
from . import _catalog, _doctor, _report

COMMANDS = (
    _catalog.MODELS,
    _catalog.GPUS,
    _estimate.COMMAND,
    _profile.COMMAND,
    _search.COMMAND,
    _report.REPORT,
    _report.COMPARE,
    _doctor.COMMAND,
)


class _OneLineParser(argparse.ArgumentParser):
    """A user's mistake on the command line is one line on stderr and exit 2, like every other
    user error here; argparse's default prints the whole usage block first."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="dstune",
        description="Benchmark and auto-tune RLHF (SFT / reward model / PPO) throughput on DeepSpeed.",
    )
    parser.add_argument("--version", action="version", version=f"dstune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def _wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False)) or "json" in (getattr(args, "formats", None) or ())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with json_stdout() if _wants_json(args) else nullcontext():
            return int(args.run(args) or 0)
    except UserInputError as error:
        print(f"dstune {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dstune {args.command}: interrupted", file=sys.stderr)
        return 130
