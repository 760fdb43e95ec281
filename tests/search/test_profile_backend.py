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


SPACE = """
step: ppo
workload: {max_prompt_seq_len: 8, max_answer_seq_len: 8, dtype: bf16, enable_ema: false}
batch: {policy: fixed_global_batch, global_batch: 2, update_batch: 2}
knobs:
  enable_hybrid_engine: [false]
  per_device_generation_batch_size: [2]
ties:
  per_device_training_batch_size: per_device_generation_batch_size
"""


@pytest.mark.timeout(1800)  # four real PPO trials: 2-5 minutes on a quiet machine, 15 on a loaded 2-core one
@pytest.mark.skipif(os.environ.get("DS_ACCELERATOR") != "cpu", reason="needs DS_ACCELERATOR=cpu")
def test_a_profiled_speedup_carries_an_interval_from_interleaved_runs(tmp_path, capsys):
    """Real tiny-opt PPO trials on one CPU rank: DeepSpeed-Chat's script (Hybrid Engine on) and the same plan
    without it. Where this stack's HE is broken the shipped script is never the pick, so the pick is the
    other plan whatever the noise; then one round measures baseline and pick again, in that order."""
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = tmp_path / "p"
    argv = ["search", "--model", "tiny-opt", "--gpus", "1", "--backend", "profile", "--space", str(space)]
    argv += ["--trials", "2", "--warmup", "0", "--steps", "2", "--confirm-rounds", "1", "--seed", "0"]
    code = main([*argv, "--out", str(out)])
    said = capsys.readouterr()
    assert code == 0, said.err
    plan = json.loads((out / "plan.json").read_text())
    if not plan["baseline"]["broken_on_this_stack"]:
        pytest.skip("the shipped script's Hybrid Engine runs on this stack, so the pick may be the script itself")
    assert plan["plan"]["enable_hybrid_engine"] is False
    speedup = plan["speedup_over_baseline"]
    assert speedup["basis"] == "measured" and "one interleaved pair" in speedup["backing"]
    lo, hi = speedup["interval"]
    assert lo < speedup["value"] < hi and speedup["tie"] == (lo <= 1.0 <= hi)
    assert plan["measured"]["throughput"]["samples_per_s_interval"] is not None  # the pick's own steps
    with (out / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    confirm = [r for r in rows if r["source"] == "confirm"]
    assert [r["enable_hybrid_engine"] for r in confirm] == ["True", "False"]  # baseline, then pick
    assert all(float(r["measured_samples_per_s_lo"]) < float(r["measured_samples_per_s"]) for r in confirm)
    text = " ".join(said.out.split())
    assert f"{lo:.2f}-{hi:.2f}x" in text and "interleaved pair" in text
    if speedup["tie"]:
        assert "no measurable difference" in text and "faster than" not in text
    else:
        assert "no measurable difference" not in text
