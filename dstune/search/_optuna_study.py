"""The Optuna study in its storage: opening it, recording the search's setup on it, and reading its finished
trials back as observations for calibration."""

from __future__ import annotations

import math
from typing import Any, Literal

from ..errors import UserInputError
from ..plan import Baseline, job_of, plan_to_dict
from ..record import Figures, Status, TrialRow
from ._calibrate import Observation
from ._pick import fits
from ._request import SearchRequest
from ._rows import row_of
from ._sampler import finished
from ._space import SearchSpace, shown_path
from ._storage import make_storage


def open_study(req: SearchRequest, sampler: Any) -> Any:
    import optuna

    if optuna.logging.get_verbosity() < optuna.logging.WARNING:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions: list[Literal["maximize", "minimize"]] = (
        ["maximize"] if req.single_objective else ["maximize", "minimize"]
    )
    storage = make_storage(req.storage, req.heartbeat_s)
    try:
        return optuna.create_study(
            study_name=req.study_name, storage=storage, sampler=sampler, directions=directions, load_if_exists=True
        )
    except ValueError as error:
        if "direction" in str(error).lower():
            raise UserInputError(
                f"--storage {req.storage}: study {req.study_name!r} exists with other objectives"
            ) from None
        raise UserInputError(f"--storage {req.storage}: cannot open the study: {error}") from None
    except Exception as error:  # noqa: BLE001 - any storage failure (driver, network, path) is the user's URL
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserInputError(f"--storage {req.storage}: cannot open the study: {first}") from None


class ObservationsReader:
    """study -> (observations for calibration, keys already tried, best feasible log samples/s).
    Finished trials never change, so each is parsed once; `rows` holds every parsed one."""

    def __init__(self, req: SearchRequest) -> None:
        self.req = req
        self.rows: dict[int, TrialRow | None] = {}
        self._own: list[Observation] = []
        self._seen: set[str] = set()
        self._best: list[float] = []

    def __call__(self, study: Any) -> tuple[list[Observation], set[str], float | None]:
        for trial in finished(study):
            if trial.number in self.rows:
                continue
            row = self.rows[trial.number] = row_of(trial)
            if row is None:  # failed without a record: its worker died (a retry is queued)
                continue
            self._seen.add(trial.user_attrs.get("key", ""))
            if row.source == "repeat":
                continue
            m = row.measured
            if row.status in (Status.OK, Status.OOM) and (m is not None or row.status == Status.OOM):
                self._own.append(
                    Observation(
                        values=row.values,
                        status=row.status,
                        samples_per_s=m.samples_per_s if m else None,
                        gpu_peak_bytes=m.gpu_peak_bytes if m else None,
                        setup=self.req.setup,
                    )
                )
            if fits(row, self.req.cap_bytes) and row.samples_per_s:
                self._best.append(math.log(row.samples_per_s))
        return list(self._own), self._seen, (max(self._best) if self._best else None)

    def running(self, study: Any) -> dict[str, float]:
        """Plans RUNNING in any worker, with their predicted samples/s (the constant liar's value)."""
        from optuna.trial import TrialState

        out = {}
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            key, predicted = trial.user_attrs.get("key"), Figures.from_json(trial.user_attrs.get("predicted"))
            if key:
                out[key] = predicted.samples_per_s if predicted else 0.0
        return out


def record_setup(study: Any, req: SearchRequest, space: SearchSpace, baseline: Baseline) -> None:
    setup = req.setup
    for key, value in (
        ("model", setup.model.name),
        ("gpus", setup.cluster.world_size),
        ("gpu_type", setup.cluster.gpu.name),
        ("step", setup.step),
        ("backend", req.backend.name),
        ("space", shown_path(space.path)),
        ("job", job_of(setup.step, plan_to_dict(baseline.plan), setup.cluster.world_size).label()),
    ):
        study.set_user_attr(key, value)
