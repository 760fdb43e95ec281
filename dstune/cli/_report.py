"""`dstune report` and `dstune compare`: study directories in, HTML / Markdown / JSON out."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ..errors import UserInputError
from ..frameworks._common import print_json
from ._command import Command

_FORMATS = ("html", "md", "json")


def _format_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=_FORMATS,
        default=None,
        help="html, md or json (repeatable; default: html and md). json prints the computed "
        "figure data and writes nothing",
    )


def _formats(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(args.formats or ("html", "md"))


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", metavar="DIR", help="study directory written by 'dstune search'")
    parser.add_argument("--out", type=Path, default=None, help="where to write report.html / report.md (default: DIR)")
    _format_argument(parser)


def _run_report(args: argparse.Namespace) -> int:
    from ..report import print_report_summary, report_study, write_report

    data = report_study(args.study)
    formats = _formats(args)
    if "json" in formats:
        print_json(data.to_json())
        return 0
    out = args.out or Path(args.study)
    written = _written(out, lambda: write_report(data, out, formats))
    print_report_summary(data, written)
    return 0


def _written(out: Path, write: Callable[[], list[Path]]) -> list[Path]:
    """Prove --out writable before rendering (seconds of figures), and turn a later write failure
    (disk full, permissions changed) into one line: every file is written atomically, so none is half."""
    from ..export import check_writable

    check_writable(out)
    try:
        return write()
    except OSError as error:
        raise UserInputError(f"--out {out}: cannot write the report ({error.strerror or error})") from None


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("studies", metavar="DIR", nargs="+", help="study directories written by 'dstune search'")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("."),
        help="where to write compare.html / compare.md (default: the current directory)",
    )
    parser.add_argument(
        "--gpu-hour-price",
        type=float,
        default=None,
        metavar="USD",
        help="price of one GPU-hour; adds cost per million tokens",
    )
    _format_argument(parser)


def _run_compare(args: argparse.Namespace) -> int:
    from ..report import compare_studies, print_compare_summary, write_compare

    data = compare_studies(args.studies, args.gpu_hour_price)
    formats = _formats(args)
    if "json" in formats:
        print_json(data.to_json())
        return 0
    written = _written(args.out, lambda: write_compare(data, args.out, formats))
    print_compare_summary(data, written)
    return 0


REPORT = Command(
    "report",
    "HTML / Markdown report of one study directory",
    _report_arguments,
    _run_report,
    description="Report on a study directory written by 'dstune search': baseline vs pick, top-10 plans,\n"
    "throughput against memory with the Pareto front, phase times, best-so-far, parameter\n"
    "importance and predicted vs measured. Writes DIR/report.html and DIR/report.md.\n"
    "  dstune report runs/opt-6.7b --format html",
)
COMPARE = Command(
    "compare",
    "side-by-side report of several study directories",
    _compare_arguments,
    _run_compare,
    description="Put the picks of several studies side by side: samples/s, per GPU, tokens/s, memory,\n"
    "and with --gpu-hour-price the cost per million tokens.\n"
    "  dstune compare runs/8gpu runs/16gpu --gpu-hour-price 2.5 --out runs/compare",
)
