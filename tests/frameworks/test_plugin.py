"""A third framework plugs in from one folder (tests/frameworks/plugins/toy): imported, it registers
itself, and the real CLI runs its estimate and search, parses its flags and refuses the others'."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

import dstune
from dstune.cli import main

PLUGINS = Path(__file__).parent / "plugins"
BASE = ["--framework", "toy", "--model", "opt-1.3b", "--gpus", "8"]


@pytest.fixture(scope="module", autouse=True)
def toy() -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(PLUGINS))
        importlib.import_module("toy")


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_estimate_runs_through_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    one = _json(capsys, ["estimate", *BASE])
    four = _json(capsys, ["estimate", *BASE, "--set", "micro_batch=4"])
    assert one["framework"] == "toy" and one["basis"] == "predicted"
    assert four["samples_per_s"] > one["samples_per_s"] and four["gpu_peak_bytes"] > one["gpu_peak_bytes"]


def test_search_writes_its_pick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, ["search", *BASE, "--out", str(tmp_path)])
    written = json.loads((tmp_path / "plan.json").read_text())
    assert written["micro_batch"] == out["micro_batch"] and out["candidates_scored"] == 7
    assert out["feasible"] and out["micro_batch"] > 1


def test_its_flags_alone_are_parsed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", *BASE, "--step", "sft"]) == 2
    assert "--step is a DeepSpeed-Chat option, not a Toy one" in capsys.readouterr().err
    assert main(["estimate", *BASE, "--set", "actor_zero_stage=3"]) == 2
    assert "actor_zero_stage is a DeepSpeed-Chat knob, not a Toy knob" in capsys.readouterr().err
    assert main(["profile", *BASE]) == 2
    assert "Toy plans cannot be profiled yet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["search", *BASE, "--help"])
    assert "Score micro-batch sizes 1..64" in capsys.readouterr().out


def test_dstune_itself_never_names_it() -> None:
    root = Path(dstune.__file__).parent
    naming = [p for p in root.rglob("*.py") if re.search(r"\btoy\b", p.read_text(encoding="utf-8"), re.I)]
    assert naming == []


def test_an_installed_package_plugs_in_by_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution on the path that names a module under the `dstune.frameworks` group is imported."""
    from dstune.frameworks import framework_names, load_plugins

    (tmp_path / "toy_entry.py").write_text("import toy  # registers the toy framework\n")
    info = tmp_path / "dstune_toy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dstune-toy\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[dstune.frameworks]\ntoy = toy_entry\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "toy_entry" in load_plugins()
    assert "toy" in framework_names()
