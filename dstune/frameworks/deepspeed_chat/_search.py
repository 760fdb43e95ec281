"""`dstune search` for DeepSpeed-Chat: tune its knobs with an Optuna study, export the pick, and return
one record that the terminal and `--json` both render."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from ...errors import UserInputError
from ...record import Status
from .._inputs import check_argv, check_out_folder, removed_unless_written
from .._interrupt import CtrlC, mark_partial
from .._outcome import failure_summary
from ._options import SearchFlags
from ._search_render import render
from ._setup import check_setup_flags
from ._workers import start_workers


def _progress(total: int, enabled: bool):
    """A rich progress bar (trials done, best so far, time left) and the callback that advances it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("[bold]searching"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )
    task = progress.add_task("search", total=total, best="")

    def advance(row: Any, rows: list[Any]) -> None:
        counted = (
            row.source != "repeat"
            and row.status not in (Status.PRUNED,)
            and not (row.status == Status.INFEASIBLE and row.measured is None)
        )
        best = max((r.measured.samples_per_s for r in rows if r.status == Status.OK and r.measured), default=None)
        label = f"best {best:,.3g} samples/s" if best else "no feasible plan yet"
        progress.update(task, advance=1 if counted else 0, best=f"trial {row.number} {row.status}; {label}")

    return progress, advance


def _check_flags(args: SearchFlags) -> None:
    """What profile refuses, search refuses too; replay's options are refused where replay does not run."""
    check_argv(list(args.argv))
    check_setup_flags(args)
    check_out_folder(args.out)
    if not args.timeout_s > 0:
        raise UserInputError(f"--timeout must be positive, got {args.timeout_s}")
    if args.warmup < 0 or args.steps < 1:
        raise UserInputError(f"--warmup must be >= 0 and --steps >= 1, got {args.warmup} and {args.steps}")
    if args.confirm_rounds is not None and args.confirm_rounds < 0:
        raise UserInputError(f"--confirm-rounds must be >= 0, got {args.confirm_rounds}")
    if args.confirm_rounds and args.backend in ("simulate", "replay"):
        raise UserInputError(f"--confirm-rounds only applies to --backend profile (got --backend {args.backend})")
    if args.backend != "replay":
        used = [f for f, v in (("--table", args.table), ("--replay-time-scale", args.replay_time_scale)) if v]
        if used:
            raise UserInputError(f"{', '.join(used)} only applies to --backend replay (got --backend {args.backend})")


def _search(prepared: Any, console: Any, json_output: bool) -> Any:
    """Run this worker's share of the study with the progress display the backend calls for."""
    from ...search import run_search as run_study

    if prepared.request.backend.scores_grid:
        if console is None:
            return run_study(prepared.request)
        with console.status("scoring every candidate with the cost model"):
            return run_study(prepared.request)
    progress, advance = _progress(prepared.trials, enabled=not json_output)
    with progress:
        return run_study(prepared.request, progress=advance)


def run_search(framework: Any, args: SearchFlags) -> SearchOutcome:
    """The whole command: checks, the study (with workers), the re-measured pick, the export, the report."""
    from ...export import check_same_study, check_writable, start_checker, stop_checker

    _check_flags(args)
    if args.backend != "profile":
        start_checker()  # DeepSpeed's config class loads while the search runs; the export waits for less
    from ...search import plan_search

    prepared = plan_search(args.search_options())
    req, out = prepared.request, prepared.out
    if req.backend.measures:
        stop_checker()  # trials take minutes: the export checks its configs itself, no process held idle
    check_same_study(out, _identity(prepared))
    with removed_unless_written(out):
        check_writable(out)
        return _run_checked(framework, args, prepared)


def _identity(prepared: Any) -> dict[str, Any]:
    """What plan.json says this study is: a folder holding another study's files is refused."""
    setup = prepared.setup
    return {
        "framework": "deepspeed-chat",
        "model": setup.model.name,
        "step": setup.step,
        "gpus": setup.cluster.world_size,
        "gpu_type": prepared.hardware or setup.cluster.gpu.name,
    }


def _run_checked(framework: Any, args: SearchFlags, prepared: Any) -> SearchOutcome:
    """The search and its export, once the inputs are valid and --out is writable."""
    from ...search._space import shown_path

    req, setup = prepared.request, prepared.setup
    console = None
    if not args.json:
        from rich.console import Console
        from rich.markup import escape

        console = Console()
        console.print(prepared.stack_note, style="bold", highlight=False, markup=False)
        console.print(
            f"[bold]{escape(prepared.backend_note)}[/bold]; "
            + escape(f"{setup.gpu_note}; space {shown_path(req.space.path)}")
        )
        for note in prepared.notes:
            console.print(note, highlight=False, markup=False)
    ctrl_c = CtrlC()
    with ctrl_c.watching():
        helpers = start_workers(args, prepared) if prepared.workers > 1 else []
        result = _search(prepared, console, args.json)
        if ctrl_c.seen and not result.interrupted:
            raise KeyboardInterrupt  # swallowed inside the search: nothing of it is exported
        if not helpers:
            result = _confirm(args, prepared, result, console)
        with ctrl_c.deferred():
            return _finish(framework, args, prepared, result, helpers, ctrl_c)


def _confirm(args: SearchFlags, prepared: Any, result: Any, console: Any) -> Any:
    """Re-measure baseline and pick in interleaved rounds (profile), each round said on the console."""
    from ...search import DEFAULT_ROUNDS, confirm_pick

    rounds = DEFAULT_ROUNDS if args.confirm_rounds is None else args.confirm_rounds
    say = None if console is None else lambda line: console.print(line, highlight=False, markup=False)
    return confirm_pick(prepared.request, result, rounds, say)


def _finish(
    framework: Any, args: SearchFlags, prepared: Any, result: Any, helpers: list[Any], ctrl_c: CtrlC
) -> SearchOutcome:
    """Write the export and report whole, then mark it partial if the search or this writing was interrupted."""
    from ...export import ExportInfo
    from ...search import run_search as run_study

    req, out, setup = prepared.request, prepared.out, prepared.setup
    if helpers:
        failed = [i for i, proc in enumerate(helpers, start=1) if proc.wait() != 0]
        result = run_study(dataclasses.replace(req, trials=0))  # every worker's trials, now finished
        result.notes.append(
            f"{prepared.workers} workers on this machine"
            + (f"; worker(s) {failed} failed (their logs: {out}/worker-N.log)" if failed else "")
        )
    result.notes.extend(prepared.notes)
    if not result.interrupted and not ctrl_c.seen:
        from ...search import stack_comparison

        compared = stack_comparison(args.search_options(), prepared, result)
        if compared:
            result.notes.insert(0, compared)
    info = ExportInfo(
        backend=req.backend.name,
        backend_note=prepared.backend_note,
        storage=prepared.storage_shown,
        study_name=req.study_name,
        headroom=req.headroom,
        gpu_note=setup.gpu_note,
        hardware=prepared.hardware,
        hardware_label=prepared.hardware_label,
    )
    outcome = SearchOutcome(result=result, info=info, out=out)
    outcome = dataclasses.replace(outcome, files=tuple(framework.export(outcome, out)))
    partial = result.interrupted or ctrl_c.seen
    if partial:
        mark_partial(out, "Ctrl-C: files cover the trials finished before it")
        return dataclasses.replace(outcome, partial=True, exit_code=130)
    return dataclasses.replace(outcome, exit_code=_exit_for_failures(result, args.json))


def write_files(outcome: SearchOutcome, out: Path) -> list[str]:
    """The export (configs, launch script, plan.json, trials.csv), then the report made from those files."""
    from ...export import write_export
    from ...report import report_study, write_report

    files = write_export(outcome.result, out, outcome.info)
    return [*files, *(path.name for path in write_report(report_study(out), out, with_figures=False))]


@dataclasses.dataclass(frozen=True)
class SearchOutcome:
    """What `dstune search` came to: the SearchResult its export, report and terminal all render (the
    verdict is the result's, computed once), where it was written, and the exit code."""

    result: Any
    info: Any
    out: Path
    files: tuple[str, ...] = ()
    partial: bool = False
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        """plan.json, as written from the same result."""
        return dict(json.loads((self.out / "plan.json").read_text()))

    def render(self) -> None:
        render(self.result, self.info, self.out, list(self.files))
        if self.partial:
            print("PARTIAL: interrupted by Ctrl-C; plan.json is marked partial", file=sys.stderr)


def _exit_for_failures(result: Any, json_output: bool) -> int:
    """1 when trials ran but none finished: a search of only failures found nothing, and says so."""
    failure = failure_summary(result.rows)
    if failure and json_output:
        print(f"dstune search: {failure}", file=sys.stderr)
    return 1 if failure else 0
