"""`dstune profile`: refusals before launch (exit 2, nothing created) and one real --json run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dstune.cli import main

TINY = ["--set", "dtype=bf16", "--set", "max_seq_len=16", "--set", "per_device_train_batch_size=2"]


def test_invalid_plan_exits_2_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "profile",
            "--model",
            "tiny-opt",
            "--gpus",
            "1",
            "--step",
            "sft",
            "--set",
            "offload=true",
            "--set",
            "zero_stage=0",
            "--out",
            str(tmp_path / "trial"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "offload_needs_zero" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_without_gpus_or_cpu_accelerator_refuses_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dstune.catalog import detect_local_gpus

    if detect_local_gpus():
        pytest.skip("this machine has GPUs")
    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["profile", "--model", "tiny-opt", "--gpus", "1", "--step", "sft", *TINY]) == 2
    assert "DS_ACCELERATOR=cpu" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_profile_json_end_to_end_ppo_llama_hybrid_engine_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On the CPU accelerator DeepSpeed cannot build Llama's HE inference containers: the trial
    says so, measures with the Hybrid Engine off, and compares with a kernel-less prediction."""
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    out = tmp_path / "trial"
    knobs = {
        "max_prompt_seq_len": 8,
        "max_answer_seq_len": 4,
        "per_device_generation_batch_size": 2,
        "per_device_training_batch_size": 2,
        "enable_hybrid_engine": "true",
        "actor_lora_dim": 4,
        "actor_lora_module_name": "layers.",
        "critic_lora_module_name": "layers.",
    }
    sets = [arg for name, value in knobs.items() for arg in ("--set", f"{name}={value}")]
    code = main(
        [
            "profile",
            "--model",
            "tiny-llama",
            "--gpus",
            "1",
            "--step",
            "ppo",
            *sets,
            "--warmup",
            "1",
            "--steps",
            "2",
            "--out",
            str(out),
            "--json",
        ]
    )
    said = capsys.readouterr()
    payload = json.loads(said.out)  # stdout is the JSON object alone; the stages went to stderr
    assert code == 0, payload
    stages = [line for line in said.err.splitlines() if line.startswith("[")]
    for expected in ("starting 1 rank(s)", "process group up", "models built; warm-up", "measured step 2/2"):
        assert any(expected in line for line in stages), said.err
    seconds = [float(line[1:].split(" s]")[0]) for line in stages]
    assert seconds == sorted(seconds) and seconds[-1] > 0  # each stage as it passed, with the time elapsed
    lo, hi = payload["throughput"]["samples_per_s_interval"]  # two measured steps: a t-interval
    assert lo < payload["throughput"]["samples_per_s"] < hi
    assert payload["status"] == "ok" and payload["world_size"] == 1 and payload["device"] == "cpu"
    assert set(payload["time"]["phases"]) == {"generation", "experience", "actor_train", "critic_train"}
    assert payload["throughput"]["tokens_per_step"] == 2 * (8 + 4)
    assert payload["he_kernels"] is False
    assert any("fp16 -> bf16" in note for note in payload["notes"])  # the default fp16 became bf16, said once
    assert any("Hybrid Engine could not start" in note for note in payload["notes"])
    assert payload["memory"]["host_peak_bytes"] > 0
    assert payload["predicted"]["time"]["phases"].keys() == payload["time"]["phases"].keys()
    assert "CPU" in payload["gpu_note"]
    assert (out / "result.json").exists() and (out / "cmd.json").exists() and (out / "log.txt").exists()
