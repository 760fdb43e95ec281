"""The terminal's view of a DeepSpeed-Chat search: baseline, pick and runners-up with their figures, the
verdict line (the result's, word for word), other jobs, notes, and where the files went."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...record import Status
from .._common import gib
from .._outcome import failure_summary


def _differences(values: dict[str, Any], reference: dict[str, Any] | None) -> str:
    from ...search import changes

    shown = changes(values, reference)
    return ", ".join(f"{k}={values.get(k)}" for k in shown) or "(same settings)"


def _rate(row: Any) -> str:
    f = row.figures
    if f is None:
        return "-"
    text = f"{f.samples_per_s:,.3f}"
    if f.samples_per_s_interval:
        text += f" ({f.samples_per_s_interval[0]:,.2f}-{f.samples_per_s_interval[1]:,.2f})"
    return text


def _versus_base(label: str, row: Any, head: Any, base_sps: float | None) -> str:
    """The pick's column states the headline speedup (a measured one comes from the re-measured pairs)."""
    if label == "pick" and head.speedup is not None:
        return f"{head.speedup.value:.2f}x"
    sps = row.samples_per_s if row.status == Status.OK else None
    return f"{sps / base_sps:.2f}x" if sps and base_sps else "-"


def render(result: Any, info: Any, out: Path, files: list[str]) -> None:
    from rich.console import Console

    console = Console()
    table, lines = _pick_table(result, info)
    console.print(table)
    for line in lines:
        console.print(line, highlight=False, markup=False)
    failure = failure_summary(result.rows)
    if failure:
        console.print(f"{failure}; no configs written", style="red", highlight=False, markup=False)
    else:
        verdict = result.verdict
        style = "bold red" if verdict.kind == "no pick" else "bold"
        console.print(verdict.line, style=style, markup=False, highlight=False)
    for line in _other_jobs(result):
        console.print(line, highlight=False, markup=False)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    _render_sources(console, result, info, out, files)


def _pick_table(result: Any, info: Any) -> tuple[Any, list[str]]:
    """Baseline, pick and three runners-up as rows, and a line for each saying how it differs."""
    from rich.markup import escape
    from rich.table import Table

    from ...search import changes

    setup = result.request.setup
    head = result.picks.headline
    base = head.baseline
    capacity = setup.cluster.gpu.memory_bytes
    table = Table(
        title=escape(f"{setup.model.name} {setup.step.upper()} on {info.hardware_label}: {len(result.rows)} trials ")
        + f"({result.new_trials} new)",
        caption=escape(f"job: {head.job.label()}"),
    )
    for column in ("", "trial", "samples/s", "90% range", "vs base", "GPU peak", "free"):
        table.add_column(column, justify="left" if column == "" else "right", no_wrap=True)
    entries = (
        ([("baseline", base)] if base else [])
        + ([("pick", head.pick)] if head.pick else [])
        + [(f"runner-up {i}", r) for i, r in enumerate(head.runners_up[:3], start=1)]
    )
    base_sps = base.samples_per_s if base and base.status == Status.OK else None
    lines = []
    for label, row in entries:
        peak = row.memory()
        sps = row.samples_per_s if row.status == Status.OK else None
        interval = row.figures.samples_per_s_interval if row.figures else None
        table.add_row(
            label,
            str(row.number),
            f"{sps:,.3f}" if sps else row.status.value,
            f"{interval[0]:,.2f}-{interval[1]:,.2f}" if interval and sps else "-",
            _versus_base(label, row, head, base_sps),
            gib(peak) if peak else "-",
            f"{1 - peak / capacity:.0%}" if peak else "-",
        )
        lines.append(_row_line(label, row, head, result.baseline.script))
    if head.equivalents:
        knobs = sorted({k for r in head.equivalents for k in changes(r.values, head.pick.values)})
        lines.insert(
            2 if base else 1,
            f"{len(head.equivalents)} other plan(s) have the same figures as the pick; "
            f"they differ only in {', '.join(knobs)}",
        )
    return table, lines


def _row_line(label: str, row: Any, head: Any, script: str) -> str:
    base = head.baseline
    if label == "baseline":
        return f"baseline (trial {row.number}): {script}"
    if label == "pick" and base is not None and row.number == base.number:
        return f"pick (trial {row.number}): the baseline itself"
    if label == "pick":
        return f"pick (trial {row.number}): as baseline but {_differences(row.values, base.values if base else None)}"
    return f"{label} (trial {row.number}): as pick but {_differences(row.values, head.pick.values)}"


def _other_jobs(result: Any) -> list[str]:
    """The --explore jobs' picks: never a like-for-like speedup over the baseline job's pick."""
    lines = []
    for alt in result.picks.alternatives:
        versus = (
            alt.speedup.versus("the baseline's settings on the same job", subject="it")
            if alt.speedup
            else "no baseline of this job in the study"
        )
        lines.append(
            f"other job [{alt.job_class}]: {alt.job.label()}: trial {alt.pick.number}, {_rate(alt.pick)} samples/s: "
            f"{versus}; vs the baseline job's pick: different training, not a like-for-like speedup"
        )
    return lines


def _render_sources(console: Any, result: Any, info: Any, out: Path, files: list[str]) -> None:
    """Where the figures came from (predicted, measured, errors) and where the files went."""
    if any(r.measured and not r.measured.gpu_peak_bytes for r in result.ranked):
        console.print("GPU peak: predicted (this backend measured no device memory)")
    errors = _errors(result)
    if errors:
        console.print(
            "prediction error |log(measured/predicted)| samples/s, by trial: "
            + ", ".join(f"#{e['trial']}: {e['samples_per_s_abs_log_error']:.2f}" for e in errors)
        )
    if info.backend == "simulate":
        console.print(f"intervals: 90%, {result.request.interval_note}", markup=False)
    console.print(info.backend_note, style="bold", markup=False)
    console.print(
        f"wrote {', '.join(files)} and study.db to {out}"
        if info.storage == f"sqlite:///{out}/study.db"
        else f"wrote {', '.join(files)} to {out}; study in {info.storage}",
        markup=False,
    )


def _errors(result: Any) -> list[dict[str, Any]]:
    from ...export import prediction_errors

    return [] if result.request.backend.scores_grid else prediction_errors(result.rows)
