"""File handling around --out: another study's folder is refused, a failed validation leaves no folder,
an unwritable report folder or cache is one line, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dstune.cli import main

SEARCH = ["search", "--gpus", "2", "--gpu-type", "A100-80G"]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real simulated study of tiny-opt PPO on 2 x A100-80G."""
    out = tmp_path_factory.mktemp("studies") / "tiny-opt"
    assert main([*SEARCH, "--model", "tiny-opt", "--out", str(out), "--json"]) == 0
    return out


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_out_holding_another_models_study_is_refused_and_left_as_it_was(study, capsys):
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in study.iterdir() if p.is_file()}
    code = main([*SEARCH, "--model", "tiny-llama", "--out", str(study)])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and "holds another study" in line and "tiny-opt" in line and "tiny-llama" in line
    assert {p.name: p.read_bytes() for p in study.iterdir() if p.is_file()} == before
    for other in (["--model", "tiny-opt", "--step", "sft"], ["--model", "tiny-opt", "--gpus", "4"]):
        argv = [*SEARCH, *other, "--out", str(study)]
        argv = argv[:1] + argv[3:] if "--gpus" in other else argv  # the cluster differs: 4 GPUs, not 2
        assert main(argv) == 2
        assert "holds another study" in _one_line(capsys.readouterr().err)


def test_the_same_study_may_write_its_folder_again(study, capsys):
    assert main([*SEARCH, "--model", "tiny-opt", "--out", str(study), "--json"]) == 0
    assert json.loads((study / "plan.json").read_text())["model"] == "tiny-opt"


def test_a_folder_with_an_unreadable_plan_json_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "plan.json").write_text("not json")
    assert main([*SEARCH, "--model", "tiny-opt", "--out", str(tmp_path)]) == 2
    assert "cannot read" in _one_line(capsys.readouterr().err)
    assert (tmp_path / "plan.json").read_text() == "not json"


FAILED_VALIDATIONS = {
    "storage-scheme": ["--model", "tiny-opt", "--storage", "foo://bar"],
    "storage-folder": ["--model", "tiny-opt", "--storage", "sqlite:////nonexistent/dstune/x.db"],
    "global-batch": ["--model", "tiny-opt", "--global-batch", "3"],
    "unknown-knob": ["--model", "tiny-opt", "--set", "nope=1"],
    "space-file": ["--model", "tiny-opt", "--space", "/nonexistent.yaml"],
    "headroom": ["--model", "tiny-opt", "--headroom", "2"],
    "explore": ["--model", "tiny-opt", "--explore", "nope"],
}


@pytest.mark.parametrize("case", sorted(FAILED_VALIDATIONS))
def test_a_failed_validation_leaves_no_out_folder(case, tmp_path, capsys):
    out = tmp_path / "new" / "out"
    assert main([*SEARCH, *FAILED_VALIDATIONS[case], "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err)
    assert not out.exists() and not (tmp_path / "new").exists()


def test_a_failed_validation_keeps_a_folder_the_user_made(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("kept")
    assert main([*SEARCH, *FAILED_VALIDATIONS["storage-scheme"], "--out", str(tmp_path)]) == 2
    assert (tmp_path / "mine.txt").read_text() == "kept"


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root ignores mode bits; sysfs refuses root too)."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    folder = Path("/sys/kernel")
    try:
        tempfile.mkstemp(dir=folder)
    except OSError:
        return folder
    pytest.skip("no read-only folder to write to on this machine")


@pytest.mark.parametrize("command", ["report", "compare"])
def test_report_out_on_a_read_only_folder_is_one_line(command, study, tmp_path, capsys):
    capsys.readouterr()
    folder = _read_only_folder(tmp_path)
    assert main([command, str(study), "--out", str(folder)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(folder) in line and "not writable" in line


def test_an_unwritable_cache_is_said_once_and_the_search_goes_on(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {**os.environ, "DSTUNE_CACHE_DIR": str(blocker / "cache")}  # a folder under a file: never creatable
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dstune", *SEARCH, "--model", "tiny-opt", "--out", str(out), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "cache folder" in line]
    assert len(said) == 1 and "not writable" in said[0] and "DSTUNE_CACHE_DIR" in said[0], done.stderr
    assert json.loads(done.stdout)["model"] == "tiny-opt"
