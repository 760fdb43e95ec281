"""Figure data: the numbers every renderer shares."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from dstune.report import build_report, load_study_dir, param_importance, pareto_front, spearman


def test_pareto_front_keeps_only_undominated_points() -> None:
    memory = np.array([10.0, 20.0, 15.0, 30.0, 12.0, 20.0])
    throughput = np.array([1.0, 5.0, 2.0, 4.0, 0.5, 3.0])
    assert pareto_front(memory, throughput) == ((10.0, 1.0), (15.0, 2.0), (20.0, 5.0))


def test_spearman() -> None:
    assert spearman(np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 20.0, 30.0, 40.0])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    assert spearman(np.array([1.0, 2.0]), np.array([1.0, 2.0])) is None


def test_simulated_report(sim_study: Path) -> None:
    data = build_report(load_study_dir(sim_study))
    head = data.headline
    assert head.pick.basis == head.baseline.basis == "predicted"
    assert head.speedup == pytest.approx(head.pick.samples_per_s / head.baseline.samples_per_s)
    assert head.headroom_bytes == pytest.approx(head.memory_cap_bytes - head.pick.gpu_peak_bytes)
    differ = {k for k, v in head.pick.knobs.items() if k in head.baseline.knobs and head.baseline.knobs[k] != v}
    assert {k for k, _, _ in head.changes} == differ  # the pick may be the baseline itself: then no change
    assert all(head.baseline.knobs[k] == b and head.pick.knobs[k] == p for k, b, p in head.changes)
    assert differ or head.speedup == pytest.approx(1.0)
    assert any("cost-model prediction" in n for n in data.notes)
    assert any(n.startswith("Predicted ranges are 90% intervals: ") for n in data.notes)
    rates = [row[3] for row in data.top.rows]
    tier = [r for r in rates if r >= max(rates) * 0.99]  # within 1%: equally fast, less memory first
    assert 0 < len(rates) <= 10 and rates[len(tier) :] == sorted(rates[len(tier) :], reverse=True)
    assert set(rates[: len(tier)]) == set(tier)
    assert rates[0] == pytest.approx(head.pick.samples_per_s)
    assert data.scatter.pick_number == data.top.rows[0][1] and data.scatter.baseline_number == 0
    assert {p.status for p in data.scatter.points} <= {"ok", "infeasible"}  # simulate: over the cap = infeasible
    assert "repeat" not in {p.source for p in data.scatter.points}
    assert data.history.numbers == ()  # recording order is no search progress: no "best so far" chart
    assert data.phases.bars[0].label == "baseline (trial 0)" and len(data.phases.bars) == 6
    assert not any(b.label.startswith("trial 0") for b in data.phases.bars)
    bar = data.phases.bars[0]
    assert sum(bar.seconds_per_ksample) == pytest.approx(1000 / head.baseline.samples_per_s)
    # every candidate was scored: importance is the exact variance split over the grid (issue 25), both targets
    assert data.importance.params and data.importance.memory and "scored candidates" in data.importance.note
    assert data.accuracy.throughput == () and "nothing was measured" in data.accuracy.note
    json.dumps(data.to_json(), allow_nan=False)


def test_profiled_report_measures_accuracy(profile_study: Path) -> None:
    data = build_report(load_study_dir(profile_study), with_importance=False)
    a = data.accuracy
    assert a.throughput and a.memory
    predicted, measured = np.array(a.throughput).T
    assert a.throughput_mape == pytest.approx(np.mean(np.abs(predicted - measured) / measured))
    assert a.memory_mape == pytest.approx(0.05 / 1.05)  # the fixture measures 5% over the prediction
    assert 0.5 < a.spearman <= 1.0
    assert a.ooms_measured == a.ooms_predicted > 0
    assert data.headline.pick.basis == "measured" and data.headline.speedup is not None


def test_importance_says_why_not(sim_study: Path, tmp_path: Path) -> None:
    assert "no study.db" in param_importance(tmp_path / "study.db", "x").note
    assert "names no Optuna study" in param_importance(sim_study / "study.db", None).note
    assert "unavailable" in param_importance(sim_study / "study.db", "no-such-study").note
    (tmp_path / "study.db").write_bytes(b"this is not sqlite")
    assert "unavailable" in param_importance(tmp_path / "study.db", "x").note


def test_importance_needs_enough_trials(tmp_path: Path) -> None:
    import optuna

    db = tmp_path / "study.db"
    study = optuna.create_study(study_name="few", storage=f"sqlite:///{db}", direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    assert "only 3 completed" in param_importance(db, "few").note


def test_report_without_study_db(profile_study: Path, tmp_path: Path) -> None:
    study = Path(shutil.copytree(profile_study, tmp_path / "s"))
    (study / "study.db").unlink()
    meta = json.loads((study / "plan.json").read_text())
    meta["study"]["storage"] = f"sqlite:///{tmp_path}/elsewhere/study.db"
    (study / "plan.json").write_text(json.dumps(meta))
    data = build_report(load_study_dir(study))
    assert data.importance.params == () and "no study.db" in data.importance.note


def test_failed_baseline_keeps_the_pick_measured(profile_study: Path, tmp_path: Path) -> None:
    import pandas as pd

    study = Path(shutil.copytree(profile_study, tmp_path / "s"))
    meta = json.loads((study / "plan.json").read_text())
    meta["baseline"].update(status="oom", measured=None)
    meta.update(speedup_over_baseline=None, verdict=None)  # what the search writes when its baseline fails
    (study / "plan.json").write_text(json.dumps(meta))
    trials = pd.read_csv(study / "trials.csv")
    trials.loc[trials["source"] == "baseline", "status"] = "oom"
    trials.to_csv(study / "trials.csv", index=False)
    data = build_report(load_study_dir(study), with_importance=False)
    head = data.headline
    assert head.pick.basis == "measured" and head.baseline.basis == "predicted" and head.speedup is None
    from dstune.report._sections import explanation, verdict

    assert "baseline did not finish here (status: oom)" in " ".join(explanation(head))
    assert "no speedup is stated" in verdict(head)


def test_explored_report_keeps_other_jobs_apart(explore_study: Path) -> None:
    """--explore lora,batch: picks that train another job are alternatives, never the headline's speedup."""
    head = build_report(load_study_dir(explore_study), with_importance=False).headline
    assert head.alternatives and all(alt.job != head.job for alt in head.alternatives)
    assert all(alt.samples_per_s > 0 and alt.basis == "predicted" for alt in head.alternatives)


def test_cpu_study_is_described_in_cpu_terms(profile_study: Path, tmp_path: Path) -> None:
    import pandas as pd

    from dstune.report._sections import explanation, verdict

    def headline_sentence(head):
        return " ".join([verdict(head), *explanation(head)])

    study = Path(shutil.copytree(profile_study, tmp_path / "cpu"))
    meta = json.loads((study / "plan.json").read_text())
    meta.update(gpu_type="cpu", hardware="cpu (DeepSpeed CPU accelerator)")
    meta["baseline"]["known_issues"] = [{"id": "he_broken_stack", "consequence": "HE generation crashes"}]
    (study / "plan.json").write_text(json.dumps(meta))
    trials = pd.read_csv(study / "trials.csv")
    trials["device"] = "cpu"
    trials.to_csv(study / "trials.csv", index=False)
    loaded = load_study_dir(study)
    data = build_report(loaded, with_importance=False)
    text = " ".join(data.notes) + headline_sentence(data.headline)
    assert loaded.on_cpu and loaded.memory_cap_bytes is None
    assert "not on cpu" not in text and "memory cap" not in headline_sentence(data.headline)
    assert "CPU accelerator" in text and "A100" not in text
    assert data.headline.baseline_ran_on_cpu
    stack = data.headline.stack or "the stack it ran on"
    assert f"broken on {stack} on GPUs (known issue he_broken_stack" in text and "never the pick" not in text


def test_profiled_history_keeps_one_job_and_no_timed_out_throughput(profile_study: Path, tmp_path: Path) -> None:
    import pandas as pd

    study = Path(shutil.copytree(profile_study, tmp_path / "t"))
    trials = pd.read_csv(study / "trials.csv")
    ok = trials.index[trials["status"] == "ok"]
    timed_out, other_job = int(ok[-1]), int(ok[-2])
    trials.loc[timed_out, "status"] = "timeout"
    trials.loc[other_job, "job"] = "some other job"
    trials.to_csv(study / "trials.csv", index=False)
    data = build_report(load_study_dir(study), with_importance=False)
    numbers = {int(n) for n in trials["number"].iloc[[timed_out, other_job]]}
    plotted = {n for n, v in zip(data.history.numbers, data.history.values) if not math.isnan(v)}
    assert plotted and not plotted & numbers
    assert int(trials["number"].iloc[timed_out]) not in {p.number for p in data.scatter.points}
    assert any("timed out" in n for n in data.notes)
