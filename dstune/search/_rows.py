"""A trial row as stored in an Optuna study, and read back: the study's only record format.

Every backend's trials (simulated, profiled, replayed, confirmed) go through these functions, so
the report, the sampler and a resumed search read the same user attributes that were written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from ..record import Basis, Figures, Status, TrialRow, interval_from_log
from ._pick import fits, memory_of
from ._storage import ROW_WRITTEN_ATTR


class Objectives(Protocol):
    """What a row's objective values depend on (a SearchRequest provides it)."""

    @property
    def single_objective(self) -> bool: ...

    @property
    def cap_bytes(self) -> float: ...


def row_of(trial: Any) -> TrialRow | None:
    attrs = trial.user_attrs
    if ROW_WRITTEN_ATTR not in attrs:
        return None
    return TrialRow(
        number=trial.number,
        status=attrs[ROW_WRITTEN_ATTR],
        source=attrs.get("source", "sampler"),
        values=dict(attrs.get("plan", {})),
        predicted=Figures.from_json(attrs.get("predicted")),
        measured=Figures.from_json(attrs.get("measured")),
        p_fit=attrs.get("p_fit"),
        reason=attrs.get("reason", ""),
        details=dict(attrs.get("details", {})),
        job=attrs.get("job", ""),
    )


def tell_values(row: TrialRow, req: Objectives) -> tuple[Any, list[float] | None]:
    """(Optuna state, objective values) for a finished row."""
    from optuna.trial import TrialState

    if row.status == Status.PRUNED:
        return TrialState.PRUNED, None
    if req.single_objective:
        figures = row.figures if fits(row, req.cap_bytes) else None
        return TrialState.COMPLETE, [figures.samples_per_s if figures is not None else 0.0]
    if row.status == Status.OK and row.figures is not None:
        return TrialState.COMPLETE, [row.figures.samples_per_s, memory_of(row) or 0.0]
    return TrialState.FAIL, None


def tell_row(study: Any, trial: Any, req: Objectives, row: TrialRow) -> None:
    state, values = tell_values(row, req)
    if values is None:
        study.tell(trial, state=state)
    else:
        study.tell(trial, values)


def row_attrs(row: TrialRow, key: str) -> dict[str, Any]:
    """A row as the study's user attributes (the inverse of row_of)."""
    return {
        ROW_WRITTEN_ATTR: row.status.value,
        "source": row.source,
        "plan": row.values,
        "key": key,
        "reason": row.reason,
        "job": row.job,
        "predicted": row.predicted.to_json() if row.predicted else None,
        "measured": row.measured.to_json() if row.measured else None,
        "p_fit": row.p_fit,
        "details": row.details_json(),
    }


def store_row(trial: Any, row: TrialRow, key: str) -> None:
    """Write the row one attribute at a time, its status last: a worker killed part-way leaves no row
    (row_of needs the status), so the trial is retried rather than read as a half-written result."""
    attrs = row_attrs(row, key)
    status = attrs.pop(ROW_WRITTEN_ATTR)
    for name, value in attrs.items():
        trial.set_user_attr(name, value)
    trial.set_user_attr(ROW_WRITTEN_ATTR, status)


def predicted_figures(pred: Any, table: Mapping[str, np.ndarray], i: int) -> Figures:
    """Row `i` of a surrogate prediction and its cost-model table as predicted figures with an interval."""
    log_sps = float(pred.log_sps[i])
    sps = float(np.exp(log_sps))
    return Figures(
        basis=Basis.PREDICTED,
        samples_per_s=sps,
        tokens_per_s=sps * float(table["tokens_per_s"][i] / table["samples_per_s"][i]),
        gpu_peak_bytes=float(np.exp(pred.log_mem[i])),
        step_s=float(table["step_s"][i]),
        phases={k[5:]: float(v[i]) for k, v in table.items() if k.startswith("time_")},
        mfu=float(table["mfu"][i]),
        samples_per_s_interval=interval_from_log(log_sps, float(pred.sd_sps[i])),
    )
