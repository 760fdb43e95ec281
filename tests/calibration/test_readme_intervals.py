"""README's interval figures are the ones the code produces (issue 25: it quoted x/÷2.10 for DPO while the
code gave another). Every x/÷ figure in README is named here with the call that computes it."""

from __future__ import annotations

import re
from pathlib import Path

from dstune.calibration._pairs import shipped_kind_interval
from dstune.calibration._shipped import calibration_for, load_fitted

README = Path(__file__).resolve().parents[2] / "README.md"


def _code_figures() -> dict[str, float]:
    """The phrase that follows (or precedes) each figure in README -> the figure as the code computes it."""
    plan, model = shipped_kind_interval("plan"), shipped_kind_interval("model")
    assert plan is not None and model is not None
    return {
        r"x/÷(\d\.\d\d) on V100": calibration_for("V100-32G").interval_factor,
        r"x/÷(\d\.\d\d) on A100/A6000": calibration_for("A100-80G").interval_factor,
        r"x/÷(\d\.\d\d)\s+where no published row": float(load_fitted()["no_rows_interval_factor"]),
        r"plan change: x/÷(\d\.\d\d)": plan.factor,
        r"different model, step or hardware: x/÷(\d\.\d\d)": model.factor,
        r"interval for\s+no rows \(x/÷(\d\.\d\d)": calibration_for("A100-80G", step="dpo").interval_factor,
    }


def test_every_readme_interval_is_the_codes() -> None:
    text = README.read_text(encoding="utf-8")
    checked = 0
    for pattern, value in _code_figures().items():
        found = re.findall(pattern, text)
        assert found, f"README no longer says {pattern!r}: update this test with where the figure went"
        for quoted in found:
            assert quoted == f"{value:.2f}", f"README says {quoted} for {pattern!r}; the code gives {value:.2f}"
        checked += len(found)
    assert checked == len(re.findall(r"x/÷\d", text)), "a README x/÷ figure no test here checks"


def test_dpo_gets_the_no_rows_interval() -> None:
    """The two DPO figures README once gave apart are one: DPO has no published row, so its interval is the
    no-rows one for every GPU."""
    no_rows = float(load_fitted()["no_rows_interval_factor"])
    for gpu in ("A100-80G", "V100-32G", "H100-80G"):
        assert calibration_for(gpu, step="dpo").interval_factor == no_rows
