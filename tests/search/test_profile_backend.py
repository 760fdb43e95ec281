"""The profile backend end to end: one real tiny PPO trial on the CPU through the CLI (slow: about a minute)."""

import csv
import json
import os

import pytest

from dstune.cli import main

pytestmark = pytest.mark.slow


@pytest.mark.skipif(os.environ.get("DS_ACCELERATOR") != "cpu", reason="needs DS_ACCELERATOR=cpu")
def test_profile_search_runs_real_trials(tmp_path, capsys):
    out = tmp_path / "p"
    code = main(
        [
            "search",
            "--model",
            "tiny-opt",
            "--gpus",
            "2",
            "--backend",
            "profile",
            "--trials",
            "1",
            "--out",
            str(out),
            "--seed",
            "0",
            "--known-issues",
            "mark",  # one trial, the baseline: pickable even where the stack's HE verdict is broken for GPUs
        ]
    )
    said = capsys.readouterr()
    assert code == 0, said.err
    plan = json.loads((out / "plan.json").read_text())
    if plan["baseline"]["broken_on_this_stack"]:
        text = " ".join(said.out.split())
        assert f"broken on stack {plan['stack']['name']} " in text and "on GPUs" in text
        assert "its measured trial ran only because DeepSpeed's CPU accelerator injects no inference kernels" in text
    assert plan["backend"] == "profile" and "CPU" in plan["backend_note"]
    assert plan["gpu_type"] == "cpu" and "cpu" in plan["hardware"] and "xcpu" in plan["study"]["name"]
    assert plan["measured"]["basis"] == "measured" and plan["predicted"]["basis"] == "predicted"
    with (out / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["source"] == "baseline" and rows[0]["status"] == "ok"
    assert float(rows[0]["measured_samples_per_s"]) > 0 and rows[0]["device"] == "cpu"
    assert plan["measured"]["throughput"]["samples_per_s"] > 0
    assert (out / "trials" / "trial-0000" / "result.json").is_file()
