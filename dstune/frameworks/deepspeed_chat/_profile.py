"""`dstune profile`: run one plan for real (short steps on DeepSpeed) and compare with the cost model."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import UserInputError
from .._common import gib
from .._inputs import check_argv, check_out_folder
from ._options import ProfileOptions
from ._setup import check_setup_flags, resolve_plan, resolve_setup

if TYPE_CHECKING:
    from rich.console import JustifyMethod

DEFAULT_TRIALS_DIR = Path("dstune-trials")


def _new_trial_dir(step: str, model: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return DEFAULT_TRIALS_DIR / f"{stamp}-{model}-{step}"


def run_profile(args: ProfileOptions) -> ProfileOutcome:
    from ...profile import CPU_NOTE, run_trial, trial_device

    check_argv(list(args.argv))
    check_setup_flags(args)
    check_out_folder(args.out)
    if args.memory_cap_gb is not None and not args.memory_cap_gb > 0:
        raise UserInputError(f"--memory-cap-gb must be positive, got {args.memory_cap_gb}")
    if not args.timeout > 0:
        raise UserInputError(f"--timeout must be positive, got {args.timeout}")
    setup = resolve_setup(args)
    plan = resolve_plan(setup, args.assignments)
    device = trial_device()
    dtype_note = None
    if (
        device == "cpu"
        and plan.dtype == "fp16"
        and not any(a.split("=")[0].strip() == "dtype" for a in args.assignments)
    ):
        plan = dataclasses.replace(plan, dtype="bf16")
        dtype_note = (
            "CPU accelerator: dtype fp16 -> bf16 (DeepSpeed's CPU backend trains in bf16; --set dtype to choose)"
        )
    out = args.out if args.out is not None else _new_trial_dir(setup.step, setup.model.name)
    from ...costmodel import estimate

    predicted = estimate(plan, setup.model, setup.cluster, critic_model=setup.critic_model)
    kwargs: dict[str, Any] = dict(
        model=setup.model,
        critic_model=setup.critic_model,
        cluster=setup.cluster,
        trial_dir=out,
        warmup=args.warmup,
        steps=args.steps,
        timeout_s=args.timeout,
        memory_cap_gb=args.memory_cap_gb,
        hostfile=args.hostfile,
        launcher=args.launcher,
        predicted=predicted,
        progress=_stage_printer(),
    )
    if not args.json:
        from rich.console import Console
        from rich.markup import escape

        console = Console()
        if dtype_note:
            console.print(dtype_note, markup=False)
        where = "the CPU (DS_ACCELERATOR=cpu)" if device == "cpu" else f"{setup.cluster.world_size} GPU(s)"
        console.print(escape(f"profiling {setup.model.name} {setup.step.upper()} on {where}; trial dir {out}"))
    result = run_trial(plan, **kwargs)
    return ProfileOutcome(
        result=result,
        predicted=_repredict(result, plan, setup, predicted),
        gpu_note=setup.gpu_note,
        device_note=CPU_NOTE if device == "cpu" else setup.gpu_note,
        dtype_note=dtype_note,
        exit_code=0 if result.ok else 1,
    )


@dataclasses.dataclass(frozen=True)
class ProfileOutcome:
    """`dstune profile`'s one record: the measured trial and the prediction it is compared with."""

    result: Any
    predicted: Any
    gpu_note: str
    device_note: str
    """What the JSON says of the device (the CPU note on the CPU accelerator)."""
    dtype_note: str | None
    exit_code: int

    def to_json(self) -> dict[str, Any]:
        payload = dict(self.result.to_json(self.predicted))
        payload["gpu_note"] = self.device_note
        if self.dtype_note:
            payload.setdefault("notes", []).append(self.dtype_note)
        return payload

    def render(self) -> None:
        from rich.console import Console

        render_profile(Console(), self.result, self.predicted, self.gpu_note)


def _stage_printer() -> Any:
    """Each stage of the trial as it passes, with the seconds since the command started, on stderr (so
    `--json` keeps stdout to the JSON object)."""
    import sys
    import time

    started = time.monotonic()

    def say(stage: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {stage}", file=sys.stderr, flush=True)

    return say


def _repredict(result: Any, plan: Any, setup: Any, predicted: Any) -> Any:
    """Compare like with like: when the Hybrid Engine's kernels turned out inactive, predict without them."""
    if result.he_kernels is not False:
        return predicted
    from ...costmodel import estimate

    return estimate(plan, setup.model, setup.cluster, critic_model=setup.critic_model, he_kernels=False)


def _fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _fmt_bytes(value: float | None) -> str:
    return "-" if value is None else gib(value)


def _ratio(measured: float | None, predicted: float | None) -> str:
    if measured is None or not predicted:
        return "-"
    return f"{measured / predicted:.2f}x"


def render_profile(console: Any, result: Any, predicted: Any, gpu_note: str) -> None:
    """Measured next to predicted, per phase and for memory; failures with their log tail."""
    from ...profile import CPU_NOTE

    _render_head(console, result, predicted, gpu_note)
    if not result.ok:
        return
    on_cpu = result.device == "cpu"
    console.print(_time_table(result, predicted, on_cpu))
    console.print(_memory_table(result, predicted, on_cpu))
    _render_rates(console, result, predicted, on_cpu)
    for note in result.notes:
        if note != CPU_NOTE:  # printed above, with what the predictions are for
            console.print(f"note: {note}", markup=False)


def _render_head(console: Any, r: Any, predicted: Any, gpu_note: str) -> None:
    """Status line, what the predictions are for, and a failed trial's error and log tail."""
    from rich.markup import escape

    from ...profile import CPU_NOTE

    colour = "green" if r.ok else "red"
    console.print(
        f"[bold]{escape(predicted.model)}[/bold] "
        + escape(f"{predicted.step.upper()}, world size {r.world_size} on {r.device}: ")
        + f"[{colour}]{escape(r.status.value)}[/{colour}]  "
        + escape(f"(trial dir {r.trial_dir})")
    )
    if r.device == "cpu":
        console.print(
            f"[yellow]{escape(CPU_NOTE)}[/yellow]; measured figures only: the cost model predicts {escape(predicted.gpu_type)}, "
            "which a CPU trial cannot be compared with"
        )
    else:
        console.print(gpu_note, markup=False)
    if not r.ok:
        console.print(r.error, style="red", markup=False, highlight=False)
        if r.log_tail:
            console.print("[dim]--- log tail ---[/dim]")
            console.print(r.log_tail, markup=False, highlight=False)


def _time_table(r: Any, predicted: Any, on_cpu: bool) -> Any:
    """Seconds per phase, measured beside predicted (a CPU trial: measured only)."""
    from rich.markup import escape
    from rich.table import Table

    times = Table(title="seconds per step: measured vs predicted")
    time_columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("phase", "left"),
        ("measured", "right"),
        ("predicted", "right"),
        ("ratio", "right"),
    )
    for name, justify in time_columns[:2] if on_cpu else time_columns:
        times.add_column(name, justify=justify)
    for name, seconds in predicted.phases.items():
        measured = r.phases.get(name)
        row = (escape(name), _fmt_s(measured), _fmt_s(seconds), _ratio(measured, seconds))
        times.add_row(*row[:2] if on_cpu else row)
    total = ("[bold]total[/bold]", _fmt_s(r.step_s), _fmt_s(predicted.step_s), _ratio(r.step_s, predicted.step_s))
    times.add_row(*total[:2] if on_cpu else total)
    return times


def _memory_table(r: Any, predicted: Any, on_cpu: bool) -> Any:
    from rich.table import Table

    memory = Table(title="memory: measured vs predicted")
    memory_columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("figure", "left"),
        ("measured", "right"),
        ("predicted", "right"),
    )
    for name, justify in memory_columns[:2] if on_cpu else memory_columns:
        memory.add_column(name, justify=justify)
    rows = [("host peak RSS per node", _fmt_bytes(r.host_peak_bytes), _fmt_bytes(predicted.host_peak_bytes))]
    if not on_cpu:
        rows[:0] = [
            (
                "GPU peak (max allocated, max over ranks)",
                _fmt_bytes(r.gpu_peak_bytes),
                _fmt_bytes(predicted.gpu_peak_bytes),
            ),
            ("GPU reserved (max over ranks)", _fmt_bytes(r.gpu_reserved_bytes), "-"),
            ("GPU used (NVML)", _fmt_bytes(r.nvml_used_bytes), "-"),
        ]
    for line in rows:
        memory.add_row(*line[:2] if on_cpu else line)
    return memory


def _render_rates(console: Any, r: Any, predicted: Any, on_cpu: bool) -> None:
    """Throughput (with the steps' spread), kernels, start-up and versions."""
    spread = r.samples_per_s_interval
    if spread:
        console.print(
            f"samples/s over the {len(r.step_times)} measured steps: 90% interval {spread[0]:,.2f}-{spread[1]:,.2f} "
            "(Student-t over the steps' log wall times)",
            markup=False,
        )
    if on_cpu:
        console.print(
            f"{r.samples_per_s:,.2f} samples/s, {r.tokens_per_s:,.0f} tokens/s, "
            f"{r.samples_per_step} samples and {r.tokens_per_step} tokens per step (measured on the CPU)"
        )
    else:
        mfu = "-" if r.mfu is None else f"{r.mfu:.1%}"
        console.print(
            f"{r.samples_per_s:,.2f} samples/s (predicted {predicted.samples_per_s:,.2f}), "
            f"{r.tokens_per_s:,.0f} tokens/s (predicted {predicted.tokens_per_s:,.0f}), "
            f"{r.samples_per_step} samples and {r.tokens_per_step} tokens per step, MFU {mfu}"
        )
    if r.he_kernels is not None:
        console.print(f"Hybrid Engine inference kernels active: {'yes' if r.he_kernels else 'no'}")
    console.print(
        f"start-up {r.startup_s:.1f} s, wall {r.wall_s:.1f} s; versions: "
        + ", ".join(f"{k} {v}" for k, v in r.versions.items()),
        markup=False,
    )
