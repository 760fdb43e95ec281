"""The one-transaction trial writer leaves the study Optuna itself would have written."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from dstune.search._storage import add_finished_trials, make_storage

CHOICES = {"zero_stage": CategoricalDistribution([1, 2, 3]), "offload": CategoricalDistribution([False, True])}


def _trials() -> list[optuna.trial.FrozenTrial]:
    return [
        create_trial(
            state=TrialState.COMPLETE,
            values=[123.5, 7.25],
            params={"zero_stage": 3, "offload": True},
            distributions=CHOICES,
            user_attrs={"key": "a", "row": {"sps": 1.5, "notes": ["x"]}, "status": "ok"},
        ),
        create_trial(state=TrialState.FAIL, user_attrs={"key": "b", "status": "oom"}),
        create_trial(
            state=TrialState.COMPLETE, values=[float("inf"), -1.0], params={}, distributions={}, user_attrs={"key": "c"}
        ),
    ]


def _study(url: str, name: str) -> optuna.Study:
    return optuna.create_study(storage=make_storage(url), study_name=name, directions=["maximize", "minimize"])


def _view(trial: optuna.trial.FrozenTrial) -> tuple:
    return (
        trial.number,
        trial.state,
        trial.values,
        trial.params,
        trial.distributions,
        trial.user_attrs,
        trial.system_attrs,
        trial.datetime_start,
        trial.datetime_complete,
    )


def test_bulk_written_study_reads_back_like_optunas_own(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    ours, theirs = _study(url, "ours"), _study(url, "theirs")
    ours.enqueue_trial({"zero_stage": 1})  # a trial already there: numbers continue after it
    theirs.enqueue_trial({"zero_stage": 1})
    trials = _trials()
    add_finished_trials(ours, trials)
    theirs.add_trials(trials)
    assert len(ours.trials) == 4  # the cached study sees the rows written around it
    loaded = {name: optuna.load_study(study_name=name, storage=url).get_trials() for name in ("ours", "theirs")}
    assert [_view(t) for t in loaded["ours"]] == [_view(t) for t in loaded["theirs"]]
    assert loaded["ours"][1].user_attrs["row"] == {"sps": 1.5, "notes": ["x"]}
    assert loaded["ours"][3].values == [float("inf"), -1.0]


def test_in_memory_study_takes_optunas_path() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    add_finished_trials(study, _trials())
    assert [t.user_attrs["key"] for t in study.trials] == ["a", "b", "c"]
