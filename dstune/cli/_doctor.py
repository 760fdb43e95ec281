"""`dstune doctor`: what this stack and these GPUs really do, and the known-broken combinations."""

from __future__ import annotations

import argparse

from ..frameworks._common import print_json
from ._command import Command

_STYLE = {"ok": "green", "info": "", "warn": "yellow"}


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="probe DeepSpeed's Hybrid Engine policies again instead of using the cached answer",
    )


def _run(args: argparse.Namespace) -> int:
    from ..doctor import run_doctor
    from ..frameworks import frameworks

    report = run_doctor(refresh=args.refresh, frameworks=frameworks())
    if args.json:
        print_json(report.to_json())
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    versions = ", ".join(f"{name} {value}" for name, value in report.versions.items() if value)
    console.print(f"[bold]stack[/bold]: {escape(versions)}")
    table = Table(title="dstune doctor")
    table.add_column("topic")
    table.add_column("consequence")
    for finding in report.findings:
        style = _STYLE[finding.level]
        said = escape(finding.consequence)
        table.add_row(escape(finding.topic), f"[{style}]{said}[/{style}]" if style else said)
    console.print(table)
    console.print(f"({report.wall_s:.1f} s; the Hybrid Engine probe is cached per installed stack, --refresh to redo)")
    return 0


COMMAND = Command(
    "doctor",
    "report versions, Hybrid Engine kernels per model family, GPUs, host limits and known issues",
    _arguments,
    _run,
    description="What this stack and these GPUs really do: versions; for each catalog model family whether\n"
    "the Hybrid Engine gets DeepSpeed inference kernels (asked of DeepSpeed's own policy lookup);\n"
    "GPUs and their links; host memory, pinned-memory and /dev/shm limits; DeepSpeed ops;\n"
    "and the known-broken combinations that apply here. Each finding says what it means.",
)
