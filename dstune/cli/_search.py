"""`dstune search`: tune DeepSpeed-Chat knobs with an Optuna study, then export the pick."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ._command import Command
from ._common import add_setup_arguments, gib, print_json, resolve_setup

SIMULATED_NOTE = "simulated: no GPUs of this kind here; figures are cost-model predictions"


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_setup_arguments(parser)
    parser.add_argument("--space", default=None, help="search space YAML (default: search_spaces/<step>.yaml)")
    parser.add_argument("--backend", choices=("auto", "simulate", "profile", "replay"), default="auto",
                        help="auto (default): profile when this machine has the GPUs, else simulate")
    parser.add_argument("--table", default=None, help="replay: CSV of measured trials (e.g. a trials.csv)")
    parser.add_argument("--trials", type=int, default=None,
                        help="new trials to evaluate (default: 40 simulate/replay, 12 profile)")
    parser.add_argument("--seed", type=int, default=None, help="sampler seed")
    parser.add_argument("--headroom", type=float, default=0.10,
                        help="GPU memory kept free: the pick must peak under (1 - headroom) x capacity (default 0.10)")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite:///OUT/study.db)")
    parser.add_argument("--out", default=None, help="output folder (default: reports/<model>-<gpus>x<gpu_type>-<step>/)")
    parser.add_argument("--warmup", type=int, default=1, help="profile: warm-up steps per trial")
    parser.add_argument("--steps", type=int, default=2, help="profile: measured steps per trial")
    parser.add_argument("--timeout", type=float, default=900, help="profile: seconds before a trial is killed")
    parser.add_argument("--hostfile", default=None, help="profile on several nodes: the deepspeed launcher's hostfile")


def _choose_backend(args: argparse.Namespace, setup: Any) -> tuple[str, str]:
    from ..catalog import detect_local_gpus

    if args.backend == "replay":
        if not args.table:
            raise UserInputError("--backend replay needs --table FILE")
        return "replay", f"replay: figures are measurements recorded in {args.table}"
    if args.backend == "simulate":
        return "simulate", "simulated (--backend simulate); figures are cost-model predictions"
    if args.backend == "profile":
        from ..profile import trial_device

        if trial_device() == "cpu":
            return "profile", ("profiled on the CPU (DS_ACCELERATOR=cpu): real trials that check the code path; "
                               "timings are not GPU performance")
        return "profile", "profiled: real trials on this machine"
    local = [g for g in detect_local_gpus() if g.spec is not None and g.spec.name == setup.cluster.gpu.name]
    if setup.cluster.nodes == 1 and len(local) >= setup.cluster.world_size:
        return "profile", f"profiled: {len(local)} local {setup.cluster.gpu.name} GPU(s)"
    return "simulate", SIMULATED_NOTE


def _backend(name: str, args: argparse.Namespace, setup: Any, cap: float, out: Path) -> Any:
    from ..search import ProfileBackend, ReplayBackend, SimulateBackend

    if name == "simulate":
        return SimulateBackend(model=setup.model, critic_model=setup.critic_model, cluster=setup.cluster, cap_bytes=cap)
    if name == "replay":
        return ReplayBackend(args.table, setup.step)
    return ProfileBackend(model=setup.model, critic_model=setup.critic_model, cluster=setup.cluster,
                          trials_dir=out / "trials", warmup=args.warmup, steps=args.steps, timeout_s=args.timeout,
                          hostfile=Path(args.hostfile) if args.hostfile else None)


def _progress(total: int, enabled: bool):
    """A rich progress bar (trials done, best so far, time left) and the callback that advances it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("[bold]searching"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[best]}"), TimeRemainingColumn(), disable=not enabled, transient=False)
    task = progress.add_task("search", total=total, best="")

    def advance(row: Any, rows: list[Any]) -> None:
        counted = row.source != "repeat" and row.status not in ("pruned",) and not (
            row.status == "infeasible" and row.measured is None)
        best = max((r.measured.samples_per_s for r in rows if r.status == "ok" and r.measured), default=None)
        label = f"best {best:,.3g} samples/s" if best else "no feasible plan yet"
        progress.update(task, advance=1 if counted else 0, best=f"trial {row.number} {row.status}; {label}")

    return progress, advance


def _knob_summary(values: dict[str, Any], baseline: dict[str, Any] | None, varied: tuple[str, ...]) -> str:
    shown = [k for k in varied if baseline is None or values.get(k) != baseline.get(k)]
    return ", ".join(f"{k}={values.get(k)}" for k in shown) or "(same as baseline)"


def render(result: Any, info: Any, out: Path, files: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..search import memory_of

    console = Console()
    req = result.request
    setup = req.setup
    base = result.baseline_row
    capacity = setup.cluster.gpu.memory_bytes
    table = Table(title=f"{setup.model.name} {setup.step.upper()} on {setup.cluster.world_size} x "
                        f"{setup.cluster.gpu.name}: {len(result.rows)} trials ({result.new_trials} new)")
    for column in ("", "trial", "status", "samples/s", "vs baseline", "GPU peak", "headroom"):
        table.add_column(column, justify="left" if column in ("", "status") else "right", no_wrap=True)
    entries = ([("baseline", base)] if base else []) + [("pick" if i == 0 else f"runner-up {i}", r)
                                                        for i, r in enumerate(result.ranked[:4])]
    base_sps = base.measured.samples_per_s if base and base.status == "ok" and base.measured else None
    knob_lines = []
    for label, row in entries:
        sps = row.measured.samples_per_s if row.measured else None
        peak = memory_of(row)
        table.add_row(label, str(row.number), row.status, f"{sps:,.3f}" if sps else "-",
                      f"{sps / base_sps:.2f}x" if sps and base_sps else "-", gib(peak) if peak else "-",
                      f"{1 - peak / capacity:.0%}" if peak else "-")
        knob_lines.append(f"{label} (trial {row.number}): " + (
            result.baseline.script if label == "baseline"
            else _knob_summary(row.values, base.values if base else None, req.space.varied)))
    console.print(table)
    for line in knob_lines:
        console.print(line, highlight=False)
    if base and base.status != "ok":
        console.print(f"baseline trial {base.number}: {base.status}: {base.reason}")
    if result.pick is None:
        console.print("[red]no plan fits under the memory cap; no configs written[/red]")
    for note in result.notes:
        if not note.startswith("baseline: "):
            console.print(f"note: {note}")
    if any(r.status == "ok" and r.measured and not r.measured.gpu_peak_bytes for r in result.ranked):
        console.print("GPU peak: predicted (this backend measured no device memory)")
    errors = [e for e in _errors(result)]
    if errors:
        console.print("prediction error |log(measured/predicted)| samples/s, by trial: "
                      + ", ".join(f"#{e['trial']}: {e['samples_per_s_abs_log_error']:.2f}" for e in errors))
    console.print(f"[bold]{info.backend_note}[/bold]")
    console.print(f"wrote {', '.join(files)} and study.db to {out}" if info.storage.startswith("sqlite:///" + str(out.resolve()))
                  else f"wrote {', '.join(files)} to {out}; study in {info.storage}")


def _errors(result: Any) -> list[dict[str, Any]]:
    from ..export import prediction_errors

    return [] if result.request.backend.name == "simulate" else prediction_errors(result.rows)


def _run(args: argparse.Namespace) -> int:
    from ..calibration import shipped_observations
    from ..catalog import load_model
    from ..export import ExportInfo, check_writable, write_export
    from ..plan import parse_assignments
    from ..search import SearchRequest, Setup, default_space_path, load_space, run_search

    setup = resolve_setup(args)
    space_path = Path(args.space) if args.space else default_space_path(args.step, setup.model.name)
    space = load_space(space_path, args.step)
    if args.assignments:
        space = space.with_fixed(parse_assignments(args.step, args.assignments))
    critic = setup.critic_model
    if args.step == "ppo" and space.critic_model and not args.critic_model:
        critic = load_model(space.critic_model)
    if not 0.0 <= args.headroom < 1.0:
        raise UserInputError(f"--headroom must be in [0, 1), got {args.headroom}")
    backend_name, backend_note = _choose_backend(args, setup)
    trials = args.trials if args.trials is not None else (12 if backend_name == "profile" else 40)
    if trials < 1:
        raise UserInputError(f"--trials must be at least 1, got {trials}")
    gpu = setup.cluster.gpu.name
    out = Path(args.out) if args.out else Path("reports") / f"{setup.model.name}-{setup.cluster.world_size}x{gpu}-{args.step}"
    check_writable(out)
    storage = args.storage or f"sqlite:///{out.resolve()}/study.db"
    study_name = f"{setup.model.name}-{setup.cluster.world_size}x{gpu}-{args.step}-{backend_name}"
    cap = setup.cluster.gpu.memory_bytes * (1.0 - args.headroom)
    backend = _backend(backend_name, args, setup, cap, out)
    search_setup = Setup(step=args.step, model=setup.model, critic_model=critic, cluster=setup.cluster)
    shipped = shipped_observations(args.step, backend.device) if backend_name == "profile" else ()
    request = SearchRequest(setup=search_setup, space=space, backend=backend, storage=storage, study_name=study_name,
                            trials=trials, seed=args.seed, headroom=args.headroom, shipped=shipped)
    if not args.json:
        from rich.console import Console

        Console().print(f"[bold]{backend_note}[/bold]; {setup.gpu_note}; space {space.path}")
    progress, advance = _progress(trials, enabled=not args.json)
    with progress:
        result = run_search(request, progress=advance)
    info = ExportInfo(backend=backend_name, backend_note=backend_note, storage=storage, study_name=study_name,
                      headroom=args.headroom, gpu_note=setup.gpu_note)
    files = write_export(result, out, info)
    from ..report import report_study, write_report

    files = [*files, *(path.name for path in write_report(report_study(out), out))]
    if args.json:
        import json

        print_json(json.loads((out / "plan.json").read_text()))
    else:
        render(result, info, out, files)
    return 0


COMMAND = Command(
    "search", "tune DeepSpeed-Chat knobs with an Optuna study and export the fastest plan that fits", _arguments, _run,
    description="Search a space of DeepSpeed-Chat knobs (search_spaces/<step>.yaml) with an Optuna study seeded\n"
                "by DeepSpeed-Chat's shipped settings, then write DeepSpeed configs, the launch script,\n"
                "plan.json, trials.csv and the report (report.html, report.md). Rerunning the same\n"
                "command continues the same study.\n"
                "  dstune search --model opt-6.7b --gpus 8\n"
                "  DS_ACCELERATOR=cpu dstune search --model tiny-opt --gpus 2 --backend profile --trials 4",
)
