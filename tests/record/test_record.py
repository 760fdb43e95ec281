"""The study record: figures with a basis, schema-versioned files, clear errors for older files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from dstune.errors import UserInputError
from dstune.plan import make_plan, plan_to_dict
from dstune.record import (
    SCHEMA_VERSION,
    Basis,
    Figures,
    Status,
    TrialRow,
    check_plan_schema,
    read_plan_json,
    read_trials_csv,
    trials_csv_text,
)


def _figures(basis: str, sps: float, interval: tuple[float, float] | None = None) -> Figures:
    return Figures(
        basis=basis,
        samples_per_s=sps,
        tokens_per_s=sps * 512,
        gpu_peak_bytes=3e10,
        step_s=64 / sps,
        phases={"generation": 1.0, "experience": 0.5},
        mfu=0.2,
        samples_per_s_interval=interval,
    )


def test_figures_round_trip_with_basis_and_interval() -> None:
    f = _figures("predicted", 10.0, (6.0, 16.0))
    assert Figures.from_json(json.loads(json.dumps(f.to_json()))) == f
    assert f.to_json()["basis"] == "predicted" and f.to_json()["throughput"]["samples_per_s_interval"] == [6.0, 16.0]
    with pytest.raises(ValueError):
        Figures(basis="guessed", samples_per_s=1.0, tokens_per_s=1.0, gpu_peak_bytes=None, step_s=1.0)


def test_trials_csv_round_trip(tmp_path: Path) -> None:
    values = plan_to_dict(make_plan("ppo", {"actor_zero_stage": 3}))
    rows = [
        TrialRow(
            0,
            Status.OK,
            "baseline",
            values,
            _figures("predicted", 9.0, (5.0, 15.0)),
            _figures("measured", 8.0),
            0.99,
            job="full fine-tuning",
        ),
        TrialRow(
            1,
            Status.OOM,
            "sampler",
            {**values, "actor_zero_stage": 0},
            _figures("predicted", 20.0),
            None,
            0.4,
            reason="CUDA out of memory",
        ),
    ]
    path = tmp_path / "trials.csv"
    path.write_text(
        trials_csv_text(
            rows,
            "ppo",
            {
                "step": "ppo",
                "model": "opt-1.3b",
                "gpus": 8,
                "gpu_type": "A100-80G",
                "backend": "profile",
                "device": "cuda",
            },
        )
    )
    back = read_trials_csv(path, "ppo")
    assert [s.row.status for s in back] == [Status.OK, Status.OOM]
    assert back[0].row.measured == rows[0].measured and back[0].row.predicted == rows[0].predicted
    assert back[1].row.measured is None and back[1].row.reason == "CUDA out of memory"
    assert back[0].row.values == values and back[0].setup["device"] == "cuda"
    with path.open() as handle:
        assert {r["schema_version"] for r in csv.DictReader(handle)} == {str(SCHEMA_VERSION)}


def test_older_files_get_a_clear_error(tmp_path: Path) -> None:
    old = tmp_path / "trials.csv"
    old.write_text("number,status,measured_samples_per_s\n0,ok,3.0\n")
    with pytest.raises(UserInputError, match="older dstune"):
        read_trials_csv(old, "ppo")
    with pytest.raises(UserInputError, match="older dstune"):
        check_plan_schema({"step": "ppo"}, "plan.json")
    newer = tmp_path / "plan.json"
    newer.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(UserInputError, match=f"schema_version {SCHEMA_VERSION + 1}"):
        read_plan_json(newer)


def test_a_row_is_judged_on_its_measurement_where_it_has_one() -> None:
    values = plan_to_dict(make_plan("sft", {}))
    predicted = TrialRow(0, "ok", "simulate", values, _figures("predicted", 5.0), None, None)
    measured = TrialRow(1, "ok", "sampler", values, _figures("predicted", 5.0), _figures("measured", 4.0), None)
    assert predicted.figures.basis == Basis.PREDICTED and measured.figures.basis == Basis.MEASURED
    assert measured.samples_per_s == 4.0 and predicted.memory() == 3e10
