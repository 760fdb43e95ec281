"""Where a trial's figures come from: the cost model, the profiler, or a recorded table."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from ..catalog import ClusterSpec, ModelSpec
from ..costmodel import DEFAULT_CONSTANTS, CostConstants, estimate
from ..errors import UserInputError
from ..plan import Plan, knob_fields, plan_to_dict
from ..record import MEASURED_STATUSES, Basis, Figures, Status, read_trials_csv, throughput_interval
from ._records import TrialRecord
from ._space import plan_key
from ._tablestack import read_table_stack


class _ProfileOptions(TypedDict):
    """`run_trial`'s options that are the same for every trial of a search."""

    warmup: int
    steps: int
    timeout_s: float
    hostfile: Path | None
    launcher: str
    env: dict[str, str] | None


class Backend(abc.ABC):
    """Evaluates one plan. `costly` backends are protected by the pruning gate."""

    name: str = ""
    costly: bool = False
    scores_grid: bool = False
    """The cost model itself: the search scores the whole grid in one pass and samples nothing."""
    measures: bool = False
    """Runs each plan on this machine, so its figures are fresh measurements (worth confirming)."""
    device: str = ""
    """What the figures were measured on (calibration rows are matched by it)."""

    @abc.abstractmethod
    def evaluate(self, plan: Plan) -> TrialRecord:
        """Run (or look up) one plan; never raises for a failed trial, returns its status."""

    def allows(self, plan_values: Mapping[str, Any]) -> bool:
        """Whether this backend can answer for the plan (replay: only recorded rows)."""
        return True

    def allowed_rows(self, columns: Mapping[str, Any]) -> Any:
        """Vectorised `allows` over a grid's column table (numpy bool array)."""
        import numpy as np

        n = len(next(iter(columns.values())))
        return np.ones(n, dtype=bool)


class SimulateBackend(Backend):
    """The calibrated cost model stands in for a measurement; over-cap plans are infeasible (Status.INFEASIBLE)."""

    name = "simulate"
    scores_grid = True

    def __init__(
        self,
        *,
        model: ModelSpec,
        critic_model: ModelSpec | None,
        cluster: ClusterSpec,
        cap_bytes: float,
        constants: CostConstants = DEFAULT_CONSTANTS,
        he_kernels: bool = True,
        transformers_version: str = "",
    ):
        self.model, self.critic_model, self.cluster = model, critic_model, cluster
        self.cap_bytes, self.constants, self.he_kernels = cap_bytes, constants, he_kernels
        self.transformers_version = transformers_version
        self.device = f"simulated {cluster.gpu.name}"

    def evaluate(self, plan: Plan) -> TrialRecord:
        e = estimate(
            plan,
            self.model,
            self.cluster,
            critic_model=self.critic_model,
            constants=self.constants,
            he_kernels=self.he_kernels,
            transformers_version=self.transformers_version,
        )
        figures = Figures.of_estimate(e)
        reasons = []
        if e.gpu_peak_bytes > self.cap_bytes:
            reasons.append(
                f"predicted GPU peak {e.gpu_peak_bytes / 2**30:.1f} GiB > cap {self.cap_bytes / 2**30:.1f} GiB"
            )
        if e.host_peak_bytes > e.host_capacity_bytes:
            reasons.append(
                f"predicted host peak {e.host_peak_bytes / 2**30:.0f} GiB per node > "
                f"{e.host_capacity_bytes / 2**30:.0f} GiB"
            )
        return TrialRecord(
            status=Status.INFEASIBLE if reasons else Status.OK,
            figures=figures,
            reason="; ".join(reasons),
            details={"device": self.device},
        )


class ProfileBackend(Backend):
    """Real short runs through `dstune.profile.run_trial`, one trial directory each."""

    name = "profile"
    costly = True
    measures = True

    def __init__(
        self,
        *,
        model: ModelSpec,
        critic_model: ModelSpec | None,
        cluster: ClusterSpec,
        trials_dir: Path,
        warmup: int = 1,
        steps: int = 2,
        timeout_s: float = 900,
        hostfile: Path | None = None,
        launcher: str = "deepspeed",
        env: Mapping[str, str] | None = None,
    ):
        self.model, self.critic_model, self.cluster = model, critic_model, cluster
        self.trials_dir = trials_dir
        self.options = _ProfileOptions(
            warmup=warmup,
            steps=steps,
            timeout_s=timeout_s,
            hostfile=hostfile,
            launcher=launcher,
            env=dict(env) if env else None,
        )
        from ..profile import trial_device

        self.device = trial_device(self.options["env"])
        """"cpu" under DS_ACCELERATOR=cpu, else "cuda"; refined from the first result."""

    def evaluate(self, plan: Plan) -> TrialRecord:
        from ..profile import run_trial

        existing = len(list(self.trials_dir.glob("trial-*"))) if self.trials_dir.exists() else 0
        trial_dir = self.trials_dir / f"trial-{existing:04d}"
        trial_dir.mkdir(parents=True, exist_ok=True)
        result = run_trial(
            plan,
            model=self.model,
            critic_model=self.critic_model,
            cluster=self.cluster,
            trial_dir=trial_dir,
            **self.options,
        )
        status = result.status
        self.device = str(result.device or self.device)
        details = {
            "trial_dir": str(trial_dir),
            "he_kernels": result.he_kernels,
            "versions": result.versions,
            "device": result.device,
            "wall_s": result.wall_s,
            "startup_s": result.startup_s,
            "host_peak_bytes": result.host_peak_bytes,
            "world_size": result.world_size,
        }
        if status != Status.OK:
            reason = result.error or (result.log_tail or "")[-300:]
            return TrialRecord(
                status=status, reason=str(reason).strip().splitlines()[-1] if reason else "", details=details
            )
        if result.samples_per_s is None or result.tokens_per_s is None or result.step_s is None:
            raise ValueError(f"{trial_dir}: the profiler reported ok without throughput figures")
        peak = result.gpu_peak_bytes or None
        figures = Figures(
            basis=Basis.MEASURED,
            samples_per_s=float(result.samples_per_s),
            tokens_per_s=float(result.tokens_per_s),
            gpu_peak_bytes=None if peak is None else float(peak),
            step_s=float(result.step_s),
            phases={k: float(v) for k, v in (result.phases or {}).items()},
            mfu=None if result.mfu is None else float(result.mfu),
            samples_per_s_interval=throughput_interval(float(result.samples_per_s), result.step_times),
        )
        return TrialRecord(status=Status.OK, figures=figures, details=details)


class ReplayBackend(Backend):
    """Answers from a recorded table of measured trials (a trials.csv of a profiled study).

    A row matches a plan when every knob equals the plan's value; knobs the table lacks
    take DeepSpeed-Chat defaults. Rows without a measurement (simulated, pruned) are skipped.
    """

    name = "replay"

    def __init__(self, table: str | Path, step: str, time_scale: float = 0.0):
        self.path = Path(table)
        self.step = step
        self.time_scale = time_scale
        """Sleep this fraction of the row's measured step time per answer (parallel-search benchmarks)."""
        self.rows = read_table(self.path, step)
        self.device = self.rows[0].device if self.rows else ""
        self.stack = read_table_stack(self.path)
        """The stack the rows ran on (its `.stack.json`), whose known-issue verdicts the replay uses."""
        self._by_key: dict[str, TableRow] = {}
        for row in self.rows:
            self._by_key.setdefault(plan_key(row.values), row)

    def lookup(self, plan_values: Mapping[str, Any]) -> TableRow | None:
        return self._by_key.get(plan_key(plan_values))

    def allows(self, plan_values: Mapping[str, Any]) -> bool:
        return self.lookup(plan_values) is not None

    def allowed_rows(self, columns: Mapping[str, Any]) -> Any:
        import numpy as np

        names = [f.name for f in knob_fields(self.step)]
        recorded = {tuple(row.values[n] for n in names) for row in self.rows}
        grid_rows = zip(*(columns[n].tolist() for n in names))
        return np.fromiter((row in recorded for row in grid_rows), dtype=bool)

    def evaluate(self, plan: Plan) -> TrialRecord:
        row = self.lookup(plan_to_dict(plan))
        if row is None:
            return TrialRecord(status=Status.ERROR, reason=f"plan not in replay table {self.path}")
        if self.time_scale > 0:
            import time

            time.sleep(self.time_scale * float((row.measured.step_s if row.measured else 0.0) or 1.0))
        return TrialRecord(
            status=row.status,
            figures=row.measured,
            reason=row.reason,
            details={"device": row.device, "table": str(self.path)},
        )


@dataclasses.dataclass(frozen=True)
class TableRow:
    values: dict[str, Any]
    status: Status
    measured: Figures | None
    reason: str
    device: str
    extra: dict[str, str]


_TABLES: dict[tuple[str, str, float], list[TableRow]] = {}


def read_table(path: Path, step: str) -> list[TableRow]:
    """Measured rows of a trials.csv (read through dstune.record), cached per (path, step, modification time)."""
    try:
        cache_key = (str(Path(path).resolve()), step, Path(path).stat().st_mtime)
    except OSError:
        cache_key = None
    if cache_key in _TABLES:
        return _TABLES[cache_key]
    rows = _read_table(Path(path), step)
    if cache_key is not None:
        _TABLES[cache_key] = rows
    return rows


def _read_table(path: Path, step: str) -> list[TableRow]:
    try:
        stored = read_trials_csv(path, step)
    except UserInputError as error:
        raise UserInputError(f"--table {error}") from None
    rows = []
    for item in stored:
        row = item.row
        if row.status not in MEASURED_STATUSES or row.source == "repeat":
            continue
        if row.status == Status.OK and row.measured is None:
            continue
        rows.append(
            TableRow(
                values=row.values,
                status=row.status,
                measured=row.measured,
                reason=row.reason,
                device=item.setup.get("device") or "",
                extra=dict(item.setup),
            )
        )
    if not rows:
        raise UserInputError(f"--table {path}: no measured {step} rows (a trials.csv of a profiled study)")
    return rows
