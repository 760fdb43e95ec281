"""Write report.html / report.md (+ PNGs) atomically; one entry point per command."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import UserInputError
from ._compare import CompareData, build_compare
from ._data import build_report
from ._html import compare_html, report_html
from ._load import load_study_dir
from ._markdown import compare_markdown, report_markdown
from ._plots import Rendered, compare_png, render_report_figures
from ._records import ReportData

FORMATS = ("html", "md")
FIGURE_FOLDER = "report_figures"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write(
    out: Path,
    stem: str,
    formats: tuple[str, ...],
    figures: list[Rendered],
    html_text: Callable[[], str],
    md_text: Callable[[str], str],
) -> list[Path]:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserInputError(f"{out}: cannot create the output directory ({error.strerror})") from None
    written = []
    if "html" in formats:
        _atomic_write(out / f"{stem}.html", html_text().encode("utf-8"))
        written.append(out / f"{stem}.html")
    if "md" in formats:
        folder = f"{stem}_figures" if stem != "report" else FIGURE_FOLDER
        for f in figures:
            _atomic_write(out / folder / f"{f.name}.png", f.png)
        _atomic_write(out / f"{stem}.md", md_text(folder).encode("utf-8"))
        written.append(out / f"{stem}.md")
    return written


def write_report(
    data: ReportData, out: Path, formats: tuple[str, ...] = FORMATS, *, with_figures: bool = True
) -> list[Path]:
    """report.html and/or report.md (figures in report_figures/) under `out`.

    `with_figures=False` writes the tables and text only: matplotlib's import and four PNGs cost more
    than the rest of a simulated search, which `dstune search` leaves to `dstune report DIR`.
    """
    figures = render_report_figures(data) if with_figures else []
    left_out = "" if with_figures else str(out)
    return _write(
        out,
        "report",
        formats,
        figures,
        lambda: report_html(data, figures, left_out),
        lambda folder: report_markdown(data, figures, folder, left_out),
    )


def compare_figures(data: CompareData) -> list[Rendered]:
    png = compare_png(data)
    caption = (
        "Each study's pick: cluster throughput, throughput per GPU"
        + (", and cost per million tokens" if data.gpu_hour_price is not None else "")
        + "."
    )
    return [Rendered("compare", "Throughput side by side", caption, png)] if png else []


def write_compare(data: CompareData, out: Path, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """compare.html and/or compare.md (figures in compare_figures/) under `out`."""
    figures = compare_figures(data)
    return _write(
        out,
        "compare",
        formats,
        figures,
        lambda: compare_html(data, figures),
        lambda folder: compare_markdown(data, figures, folder),
    )


def report_study(path: str | Path, *, with_importance: bool = True) -> ReportData:
    return build_report(load_study_dir(path), with_importance=with_importance)


def compare_studies(paths: list[str | Path], gpu_hour_price: float | None = None) -> CompareData:
    if gpu_hour_price is not None and not gpu_hour_price > 0:
        raise UserInputError(f"--gpu-hour-price must be a positive number of USD, got {gpu_hour_price}")
    return build_compare([load_study_dir(p) for p in paths], gpu_hour_price)
