"""Every --json command's stdout parses in a clean environment (no DS_ACCELERATOR: DeepSpeed then
announces its CPU fallback, which must land on stderr)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ["--model", "opt-1.3b", "--gpus", "8", "--gpu-type", "A100-80G"]


def _run(args: list[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """No DS_* variables, and an empty dstune cache, so the doctor's HE probe runs (in a child) as on a new machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DS_")}
    env.update(PYTHONPATH=str(ROOT), DSTUNE_CACHE_DIR=str(cwd / ".dstune-cache"), **extra)
    argv = [sys.executable, "-m", "dstune", *args]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _json_stdout(args: list[str], cwd: Path, **extra: str) -> object:
    done = _run(args, cwd, **extra)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study") / "s"
    payload = _json_stdout(["search", *SETUP, "--out", str(out), "--json"], out.parent)
    assert isinstance(payload, dict)
    return out


@pytest.mark.parametrize(
    "args",
    [
        ["models", "--json"],
        ["gpus", "--json"],
        ["doctor", "--json"],
        ["estimate", *SETUP, "--json"],
        ["estimate", "--framework", "openrlhf", *SETUP, "--json"],
        ["search", "--framework", "openrlhf", *SETUP, "--out", "s", "--json"],
    ],
    ids=lambda a: "-".join(a[: 3 if "--framework" in a else 1]),
)
def test_json_command_stdout_parses(args: list[str], tmp_path: Path) -> None:
    assert _json_stdout(args, tmp_path)


def test_search_report_compare_json_parse(study: Path, tmp_path: Path) -> None:
    assert isinstance(_json_stdout(["report", str(study), "--format", "json"], tmp_path), dict)
    assert _json_stdout(["compare", str(study), str(study), "--format", "json"], tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name != ".dstune-cache"] == []


def test_profile_json_parses(tmp_path: Path) -> None:
    """Profiling needs DS_ACCELERATOR=cpu on a machine without GPUs: without it, an error line and no stdout."""
    tiny = ["--set", "dtype=bf16", "--set", "max_seq_len=16", "--set", "per_device_train_batch_size=2"]
    args = ["profile", "--model", "tiny-opt", "--gpus", "1", "--step", "sft", *tiny, "--out", "t", "--json"]
    refused = _run(args, tmp_path)
    if refused.returncode == 2:
        assert refused.stdout == "" and refused.stderr.strip().splitlines()[-1].startswith("dstune profile: error:")
    payload = _json_stdout(args, tmp_path, DS_ACCELERATOR="cpu")
    assert isinstance(payload, dict)


def test_every_command_with_json_output_is_run_above() -> None:
    """A new command with --json (or --format json) must join the runs above."""
    import argparse

    from dstune.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    with_json = {
        name
        for name, parser in sub.choices.items()
        if any("--json" in a.option_strings or a.dest == "formats" for a in parser._actions)
    }
    assert with_json == {"models", "gpus", "doctor", "estimate", "search", "report", "compare", "profile"}
