"""Issue 25 item 6: terminal, plan.json, report and launch script give one answer (pick, speedup, verdict)."""

from __future__ import annotations

import json
from pathlib import Path

from dstune.cli import main
from dstune.record import Basis, Figures, Status, TrialRow
from dstune.search._pick import rank


def _row(number: int, values: dict, rate: float, peak: float) -> TrialRow:
    figures = Figures(
        basis=Basis.PREDICTED, samples_per_s=rate, tokens_per_s=rate * 512, gpu_peak_bytes=peak, step_s=1 / rate
    )
    return TrialRow(number, Status.OK, "simulate", values, figures, None, 1.0)


def test_a_tie_goes_to_the_plan_with_fewer_known_issues() -> None:
    """Equal figures: the plan flagged risky loses even with less memory and fewer changes from the baseline."""
    risky = _row(1, {"enable_hybrid_engine": True}, 1.0, 60e9)
    safe = _row(2, {"enable_hybrid_engine": False}, 1.0, 61e9)
    base = {"enable_hybrid_engine": True}
    assert [r.number for r in rank([risky, safe], 72e9, baseline=base)] == [1, 2]
    hits = lambda values: int(values["enable_hybrid_engine"])  # noqa: E731
    assert [r.number for r in rank([risky, safe], 72e9, baseline=base, risks=hits)] == [2, 1]
    slower = _row(3, {"enable_hybrid_engine": False}, 0.5, 10e9)  # outside the tie: speed still decides first
    assert [r.number for r in rank([slower, risky], 72e9, risks=hits)] == [1, 3]


def _top_trials(report_md: str) -> list[int]:
    table = report_md.split("## Top")[1].split("\n\n")[1]
    return [int(line.split("|")[2]) for line in table.splitlines()[2:] if line.split("|")[1].strip()]


def test_qwen_pick_is_the_reports_first_and_hits_no_known_issue(tmp_path: Path) -> None:
    """qwen2.5-7b on 8 GPUs: plans with and without the Hybrid Engine (no kernels for qwen2: risky
    he_without_kernels) have the same figures. The export must pick the unflagged one, and the report's #1
    must be the exported pick."""
    assert main(["search", "--model", "qwen2.5-7b", "--gpus", "8", "--out", str(tmp_path), "--json"]) == 0
    meta = json.loads((tmp_path / "plan.json").read_text())
    assert not any("hit by the pick" in note for note in meta["notes"]), meta["notes"]
    assert meta["plan"]["enable_hybrid_engine"] is False
    top = _top_trials((tmp_path / "report.md").read_text())
    assert top[0] == meta["trial"] and top == meta["ranked_trials"][: len(top)]
