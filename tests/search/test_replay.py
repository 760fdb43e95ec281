"""Replay backend: answers from the recorded table of real CPU trials shipped in dstune/calibration/data."""

import csv
import json
from pathlib import Path

import pytest

from dstune.calibration import DATA_DIR
from dstune.cli import main
from dstune.errors import UserInputError
from dstune.plan import job_of, make_plan
from dstune.search import ReplayBackend, read_table, shipped_observations

TABLE = DATA_DIR / "tiny-opt-ppo-2xcpu.csv"


def test_table_rows_are_measurements():
    rows = read_table(TABLE, "ppo")
    assert len(rows) >= 10
    assert all(r.device == "cpu" for r in rows)
    assert all(r.measured.samples_per_s > 0 for r in rows if r.status == "ok")
    assert shipped_observations("ppo", "cpu") and not shipped_observations("ppo", "cuda")


def test_replay_backend_lookup():
    backend = ReplayBackend(TABLE, "ppo")
    row = backend.rows[0]
    record = backend.evaluate(make_plan("ppo", row.values))
    assert record.status == row.status and record.measured == row.measured
    missing = make_plan(
        "ppo", {**row.values, "per_device_generation_batch_size": 3, "per_device_training_batch_size": 3}
    )
    assert backend.evaluate(missing).status == "error"


def _table_with_an_oom(tmp_path):
    """The shipped table with its slowest row turned into an OOM, so a failure is in the replay (the
    calibration then lifts the memory model for plans like it)."""
    with TABLE.open() as handle:
        reader = csv.DictReader(handle)
        rows, fields = list(reader), reader.fieldnames
    slowest = min(rows, key=lambda r: float(r["measured_samples_per_s"] or 0))
    slowest["status"] = "oom"
    path = tmp_path / "with-oom.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_replay_search_finds_the_table_best(tmp_path):
    table = _table_with_an_oom(tmp_path)
    out = tmp_path / "r"
    code = main(
        [
            "search",
            "--model",
            "tiny-opt",
            "--gpus",
            "2",
            "--gpu-type",
            "A100-80G",
            "--backend",
            "replay",
            "--table",
            str(table),
            "--space",
            str(Path(__file__).resolve().parents[2] / "search_spaces" / "tiny-ppo-table.yaml"),
            "--trials",
            "30",
            "--out",
            str(out),
            "--seed",
            "0",
            "--known-issues",
            "mark",  # replay, not the installed stack: its HE verdict may exclude the table's best (an HE plan)
        ]
    )
    assert code == 0
    plan = json.loads((out / "plan.json").read_text())
    rows = read_table(table, "ppo")
    same_job = [r for r in rows if r.status == "ok" and job_of("ppo", r.values, 2).label() == plan["job"]["label"]]
    best = max(r.measured.samples_per_s for r in same_job)
    assert plan["measured"]["throughput"]["samples_per_s"] == pytest.approx(best)
    assert plan["backend"] == "replay"
    with (out / "trials.csv").open() as handle:
        statuses = [r["status"] for r in csv.DictReader(handle)]
    assert "oom" in statuses  # the table's failed trial replays as a failure, and the search went on
    errors = plan["calibration"]["prediction_errors"]
    assert errors[0]["samples_per_s_abs_log_error"] > 2 > errors[-1]["samples_per_s_abs_log_error"]


def test_bad_table(tmp_path):
    bad = tmp_path / "t.csv"
    bad.write_text("status,actor_zero_stage\nok,2\n")
    with pytest.raises(UserInputError, match="older dstune"):
        read_table(bad, "ppo")
    bad.write_text("schema_version,status,actor_zero_stage\n2,ok,2\n")
    with pytest.raises(UserInputError, match="without figures"):
        read_table(bad, "ppo")
    with pytest.raises(UserInputError, match="not found"):
        read_table(tmp_path / "none.csv", "ppo")
