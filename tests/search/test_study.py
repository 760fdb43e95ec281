"""Ctrl-C outside a trial's run still ends the trial as interrupted: none is left RUNNING for the next worker."""

from __future__ import annotations

from pathlib import Path

import optuna

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.costmodel import estimate
from dstune.plan import Plan
from dstune.search import Backend, Figures, SearchRequest, Setup, TrialRecord, load_space, run_search


class CtrlCWhileWritten:
    """A backend extra that Ctrl-C lands on as the trial's row is turned into study attributes."""

    def __str__(self) -> str:
        raise KeyboardInterrupt


class InterruptedAfterRun(Backend):
    """Answers with the cost model; its second trial is interrupted after the run, while the row is written."""

    name = "interrupted-after-run"
    costly = True
    device = "cpu"

    def __init__(self, setup: Setup) -> None:
        self.setup, self.runs = setup, 0

    def evaluate(self, plan: Plan) -> TrialRecord:
        self.runs += 1
        e = estimate(plan, self.setup.model, self.setup.cluster, critic_model=self.setup.critic_model)
        f = Figures.of_estimate(e)
        measured = Figures(
            basis="measured",
            samples_per_s=f.samples_per_s,
            tokens_per_s=f.tokens_per_s,
            gpu_peak_bytes=f.gpu_peak_bytes,
            step_s=f.step_s,
            phases=f.phases,
            mfu=f.mfu,
        )
        details = {"wall_s": 1.0} if self.runs == 1 else {"wall_s": CtrlCWhileWritten()}
        return TrialRecord(status="ok", figures=measured, details=details)


def test_ctrl_c_while_a_row_is_written_records_it_interrupted_and_keeps_the_finished_ones(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(
        "step: sft\nbatch:\n  policy: fixed_global_batch\n  global_batch: 64\n"
        "knobs:\n  zero_stage: [2, 3]\n  gradient_checkpointing: [false, true]\n  per_device_train_batch_size: [4, 8]\n"
    )
    setup = Setup("sft", load_model("opt-1.3b"), None, make_cluster(load_gpu("A100-80G"), 8))
    storage = f"sqlite:///{tmp_path}/study.db"
    req = SearchRequest(
        setup=setup,
        space=load_space(space),
        backend=InterruptedAfterRun(setup),
        storage=storage,
        study_name="t",
        trials=3,
        seed=0,
    )
    result = run_search(req)
    assert result.interrupted
    assert [(r.status, r.reason) for r in result.rows] == [("ok", ""), ("error", "interrupted (Ctrl-C)")]
    assert result.rows[1].values["zero_stage"] in (2, 3), "the interrupted row names its plan"
    study = optuna.load_study(study_name="t", storage=storage)
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    assert [t.state for t in study.get_trials()] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
