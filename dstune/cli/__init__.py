"""Command line: parse, call one library function, print. Exit 2 with one line for user errors."""

from ._main import COMMANDS, build_parser, entry, main

__all__ = ["COMMANDS", "build_parser", "entry", "main"]
