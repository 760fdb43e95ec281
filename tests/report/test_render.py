"""HTML, Markdown, JSON and terminal output of `dstune report` and `dstune compare`, escaping included."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dstune.cli import main
from dstune.report import compare_studies, cost_per_million_tokens

EVIL = "<script>alert(1)</script>"


def _imgs(html: str) -> list[str]:
    return re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)


def test_report_writes_self_contained_html_and_markdown(
    sim_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = Path(shutil.copytree(sim_study, tmp_path / "study"))
    assert main(["report", str(study)]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "report.html" in out
    html = (study / "report.html").read_text()
    assert len(_imgs(html)) == 3  # scatter, phases, grid importance (simulated: no history or accuracy plot)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html) and "<script" not in html
    assert "cost-model prediction" in html and "Top 10 plans" in html
    md = (study / "report.md").read_text()
    pngs = re.findall(r"\]\((report_figures/[\w-]+\.png)\)", md)
    assert len(pngs) == 3 and all((study / p).stat().st_size > 5000 for p in pngs)
    assert (study / "report_figures/throughput-memory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_profiled_report_has_accuracy_figure(profile_study: Path, tmp_path: Path) -> None:
    assert main(["report", str(profile_study), "--out", str(tmp_path), "--format", "html"]) == 0
    html = (tmp_path / "report.html").read_text()
    assert len(_imgs(html)) == 5 and "Spearman rank correlation" in html
    assert not (tmp_path / "report.md").exists()


def test_formats(sim_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(sim_study), "--out", str(tmp_path / "md"), "--format", "md"]) == 0
    assert (tmp_path / "md/report.md").exists() and not (tmp_path / "md/report.html").exists()
    capsys.readouterr()
    assert main(["report", str(sim_study), "--out", str(tmp_path / "js"), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert not (tmp_path / "js").exists()
    assert data["header"]["model"] == "opt-2.7b" and len(data["top"]) == 10
    assert data["headline"]["speedup"] >= 0.99 and data["scatter"]["front"]  # the pick is no slower than the baseline


def test_html_and_markdown_escape_everything_from_the_study(tmp_path: Path, study_factory: Callable[..., Path]) -> None:
    study = study_factory(tmp_path / "a|b <b>dir", model_label=EVIL, n_trials=12, importance=False)
    assert main(["report", str(study), "--out", str(tmp_path / "out")]) == 0
    html = (tmp_path / "out/report.html").read_text()
    assert EVIL not in html and "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    md = (tmp_path / "out/report.md").read_text()
    assert EVIL not in md and "&lt;script&gt;" in md
    other = study_factory(tmp_path / "plain", n_trials=12, importance=False)
    assert main(["compare", str(study), str(other), "--out", str(tmp_path / "cmp")]) == 0
    html = (tmp_path / "cmp/compare.html").read_text()
    assert "<b>" not in html and "a|b &lt;b&gt;dir" in html and "<script" not in html
    md = (tmp_path / "cmp/compare.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| figure"))
    assert header.count(" | ") == 2 and r"a\|b &lt;b&gt;dir" in header  # the pipe cannot split a cell


def test_compare(sim_study: Path, sim16_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compare", str(sim_study), str(sim16_study), "--out", str(tmp_path), "--gpu-hour-price", "2.5"]
    assert main(args) == 0
    assert "USD per million tokens" in capsys.readouterr().out
    html = (tmp_path / "compare.html").read_text()
    assert len(_imgs(html)) == 1 and "opt-2.7b-16" in html and "16 x A100-40G" in html
    assert (tmp_path / "compare_figures/compare.png").exists() and "compare_figures/compare.png" in (
        tmp_path / "compare.md"
    ).read_text()
    data = compare_studies([sim_study, sim16_study], 2.5)
    for e in data.entries:
        assert e.samples_per_s_per_gpu == pytest.approx(e.pick.samples_per_s / e.gpus)
        assert e.cost_per_million_tokens == pytest.approx(2.5 * e.gpus / 3600 / e.pick.tokens_per_s * 1e6)
    assert [e.gpus for e in data.entries] == [8, 16]
    assert main(args + ["--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["gpu_hour_price"] == 2.5 and payload["entries"][1]["cost_per_million_tokens"] > 0


def test_cost_formula() -> None:
    assert cost_per_million_tokens(2.0, 8, 10_000.0) == pytest.approx(2.0 * 8 / 3600 / 10_000 * 1e6)


def test_compare_rejects_bad_price(sim_study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(sim_study), "--gpu-hour-price", "-1"]) == 2
    assert "--gpu-hour-price" in capsys.readouterr().err


def test_help_does_not_import_matplotlib_or_pandas() -> None:
    code = (
        "import sys; from dstune.cli import build_parser; build_parser().format_help(); "
        "print(sorted(m for m in ('matplotlib', 'pandas', 'optuna') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_compare_flags_an_infeasible_baseline(sim_study: Path, tmp_path: Path) -> None:
    study = Path(shutil.copytree(sim_study, tmp_path / "infeasible"))
    meta = json.loads((study / "plan.json").read_text())
    meta["baseline"]["status"] = "infeasible"
    (study / "plan.json").write_text(json.dumps(meta))
    data = compare_studies([study, sim_study])
    flags = [e.baseline_flag for e in data.entries]
    assert flags == ["infeasible", None]
    assert any("baseline is infeasible" in n for n in data.notes)
    assert ("baseline", "infeasible", "ran as shipped") in data.summary.rows
