"""Bad input as a user types it: one line on stderr, exit 2, nothing written (real subprocesses)."""

import json
import os
import subprocess
import sys

import pytest

from dstune.catalog import load_model

A100 = ("--gpu-type", "A100-80G")


def dstune(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dstune", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def _config(tmp_path, **changes):
    path = tmp_path / "cfg" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(dict(load_model("tiny-opt").hf_config, **changes)))
    return str(path)


def _refused(result, words):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert words in lines[0], lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize(
    "make, extra, words",
    [
        (lambda t: _config(t, hidden_size=-4096), (), "non-positive hidden_size=-4096"),
        (lambda t: _config(t, num_attention_heads=5), (), "does not divide hidden_size"),
        (lambda t: str(t / "missing" / "config.json"), (), "no such config file or directory"),
        (lambda t: "acme/not-cached-model", (), "neither a catalog alias nor in the local Hugging Face cache"),
        (lambda t: "tiny-opt", ("--he-kernels", "yes", "--no-he-kernels"), "--he-kernels given more than once"),
        (lambda t: "tiny-opt", ("--set", "actor_zero_stage=2", "--set", "actor_zero_stage=3"), "given more than once"),
        (lambda t: "tiny-opt", ("--step", "sft", "--critic-model", "opt-350m"), "--step sft has none"),
    ],
)
def test_estimate_refuses_in_one_line(tmp_path, make, extra, words):
    _refused(dstune("estimate", "--model", make(tmp_path), "--gpus", "2", *A100, *extra), words)


def test_malformed_and_three_field_configs_are_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"model_type": "opt",')
    _refused(dstune("estimate", "--model", str(bad), "--gpus", "2", *A100), "cannot read model config")
    three = tmp_path / "three.json"
    three.write_text(json.dumps({"model_type": "opt", "hidden_size": 64, "num_hidden_layer": 2}))
    _refused(dstune("estimate", "--model", str(three), "--gpus", "2", *A100), "lacks num_hidden_layers")


def test_ambiguous_gpu_prefix_lists_candidates():
    _refused(dstune("estimate", "--model", "tiny-opt", "--gpus", "2", "--gpu-type", "A100"), "A100-40G, A100-80G")


@pytest.mark.parametrize(
    "extra, words",
    [
        (("--backend", "profile", "--timeout", "-5"), "--timeout must be positive"),
        (("--table", "trials.csv"), "--table only applies to --backend replay"),
        (("--backend", "profile", "--hostfile", "no-such-hostfile"), "is not a file"),
        (("--step", "sft", "--critic-model", "opt-350m"), "--step sft has none"),
    ],
)
def test_search_refuses_before_writing(tmp_path, extra, words):
    out = tmp_path / "study"
    _refused(dstune("search", "--model", "tiny-opt", "--gpus", "2", *A100, "--out", str(out), *extra), words)
    assert not out.exists()


def test_out_under_a_regular_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("")
    out = str(tmp_path / "afile" / "trial")
    _refused(dstune("profile", "--model", "tiny-opt", "--gpus", "1", "--out", out), "is a file, not a folder")
    _refused(dstune("search", "--model", "tiny-opt", "--gpus", "2", *A100, "--out", out), "is a file, not a folder")


def test_profile_missing_hostfile_launches_nothing(tmp_path):
    out = tmp_path / "trial"
    result = dstune("profile", "--model", "tiny-opt", "--gpus", "1", "--hostfile", "nope", "--out", str(out))
    _refused(result, "--hostfile 'nope' is not a file")
    assert not out.exists()


@pytest.mark.slow
def test_search_whose_trials_all_fail_exits_non_zero_and_says_why(tmp_path):
    """A real profile trial that cannot finish within 1 s: the search reports the timeout, never 'no plan fits'."""
    out = tmp_path / "study"
    result = subprocess.run(
        [sys.executable, "-m", "dstune", "search", "--model", "tiny-opt", "--gpus", "1", "--step", "sft"]
        + ["--backend", "profile", "--trials", "1", "--timeout", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "DS_ACCELERATOR": "cpu"},
    )
    assert result.returncode == 1, result.stderr
    said = " ".join((result.stdout + result.stderr).split())
    assert "no trial finished: 1 trial(s) failed (1 timeout)" in said, said
    assert "ran past its 1 s limit" in said
    assert not list(out.glob("ds_config*.json")) and not list(out.glob("run_step*.sh"))
