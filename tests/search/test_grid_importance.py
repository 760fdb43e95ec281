"""Issue 25 item 8: a simulated study's importance is exact over the whole scored grid (first-order main effects)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from dstune.cli import main
from dstune.search._importance import main_effects


def test_main_effects_split_the_variance_of_a_product_grid() -> None:
    """y = 2^a * 1.1^b on the full 3 x 2 grid: shares are Var(a log 2) and Var(b log 1.1) over Var(log y)."""
    a, b = np.meshgrid(np.arange(3), np.arange(2), indexing="ij")
    cols = {"a": a.ravel(), "b": b.ravel().astype(bool), "fixed": np.zeros(6)}
    y = 2.0 ** a.ravel() * 1.1 ** b.ravel()
    found = main_effects(cols, y)
    va, vb = np.var(a.ravel() * math.log(2)), np.var(b.ravel() * math.log(1.1))
    assert list(found) == ["a", "b"]  # a one-valued knob explains nothing and is left out
    assert found["a"] == pytest.approx(va / (va + vb)) and found["b"] == pytest.approx(vb / (va + vb))
    assert sum(found.values()) == pytest.approx(1.0)  # no interaction on this grid


def test_main_effects_ignore_unscored_candidates_and_need_a_spread() -> None:
    cols = {"a": np.array([0, 1, 0, 1])}
    assert main_effects(cols, np.array([1.0, 2.0, np.nan, 0.0])) == pytest.approx({"a": 1.0})
    assert main_effects(cols, np.ones(4)) == {}


def test_the_search_report_shows_which_knobs_move_throughput_and_memory(tmp_path: Path) -> None:
    """The report `search` writes: importance over all candidates of the grid (not 'left out'), both targets,
    and, since it draws no figures, the command that draws them; `dstune report` then draws them."""
    out = tmp_path / "opt"
    assert main(["search", "--model", "opt-1.3b", "--gpus", "8", "--out", str(out), "--json"]) == 0
    meta = json.loads((out / "plan.json").read_text())
    md = (out / "report.md").read_text()
    section = md.split("## Parameter importance")[1].split("## Figures")[0]
    assert "left out" not in section and f"all {meta['study']['candidates']:,} scored candidates" in section
    rows = [line.split("|")[1:4] for line in section.splitlines() if line.startswith("| ") and "knob" not in line]
    memory = {knob.strip(): float(mem.strip(" %").replace("&lt;", "")) for knob, _, mem in rows}
    assert rows and max(memory, key=memory.get) in (
        "actor_zero_stage",
        "offload",
        "zero_stage",
        "offload_reference_model",
    )
    assert f"Run \\`dstune report {out}\\` to add them" in md
    assert main(["report", str(out)]) == 0
    drawn = (out / "report.md").read_text()
    assert "## Figures" not in drawn and "report_figures/importance.png" in drawn
