"""Study directories: what is read, what is tolerated, and one-line errors naming the bad file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dstune.cli import main
from dstune.errors import UserInputError
from dstune.report import build_report, load_study_dir


def _copy(study: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(study, tmp_path / study.name))


def test_reads_knobs_phases_and_predicted_figures(sim_study: Path) -> None:
    study = load_study_dir(sim_study)
    assert study.step == "ppo" and study.simulated
    assert "actor_zero_stage" in study.knobs and "extra_column" not in study.knobs
    assert study.phases == ("generation", "experience", "actor_train", "critic_train")
    ok = study.trials[study.trials["status"] == "ok"]
    assert (ok["fig_basis"] == "predicted").all()
    assert ok["fig_samples_per_s"].equals(ok["predicted_samples_per_s"].astype(float))


def test_profile_figures_prefer_measurements(profile_study: Path) -> None:
    t = load_study_dir(profile_study).trials
    measured = t["measured_samples_per_s"].notna()
    assert measured.any() and (t.loc[measured, "fig_basis"] == "measured").all()
    assert (t.loc[measured, "fig_samples_per_s"] == t.loc[measured, "measured_samples_per_s"]).all()
    oom = t["status"] == "oom"
    assert (t.loc[oom, "fig_basis"] == "predicted").all()  # OOMs have no measurement: drawn where predicted


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("plan.json", None, "plan.json: not found"),
        ("plan.json", "{not json", "plan.json: not valid JSON"),
        ("plan.json", "[1, 2]", "plan.json: expected a JSON object"),
        ("trials.csv", None, "trials.csv: not found"),
        ("trials.csv", "", "trials.csv: cannot be read as CSV"),
        ("trials.csv", "a,b\n1,2\n", "trials.csv: missing column(s) number, status"),
        ("trials.csv", "number,status\nx,ok\n", "trials.csv: column 'number'"),
    ],
)
def test_bad_files_are_user_errors_naming_the_file(
    sim_study: Path, tmp_path: Path, name: str, content: str | None, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    study = _copy(sim_study, tmp_path)
    if content is None:
        (study / name).unlink()
    else:
        (study / name).write_text(content)
    with pytest.raises(UserInputError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_study_dir(study)
    assert main(["report", str(study)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and name in err


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="no such study directory"):
        load_study_dir(tmp_path / "nope")


def test_tolerates_missing_optional_columns_and_partial_plan_json(sim_study: Path, tmp_path: Path) -> None:
    """A study still running: plan.json without a pick or baseline, trials.csv without measured_*, mfu, source."""
    study = _copy(sim_study, tmp_path)
    trials = pd.read_csv(study / "trials.csv")
    trials = trials.drop(columns=[c for c in trials if c.startswith("measured_") or c in ("mfu", "reason", "source")])
    trials.to_csv(study / "trials.csv", index=False)
    meta = json.loads((study / "plan.json").read_text())
    for key in ("plan", "predicted", "measured", "baseline", "versions", "memory_cap_bytes"):
        meta.pop(key)
    (study / "plan.json").write_text(json.dumps(meta))
    data = build_report(load_study_dir(study), with_importance=False)
    assert data.headline.pick is not None and data.headline.pick.label == "pick"
    assert data.headline.baseline is None and data.headline.speedup is None
    assert data.top.rows and data.scatter.memory_cap_bytes is None
