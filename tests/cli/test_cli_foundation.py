"""The CLI as a user runs it: a real subprocess, exit codes, one-line errors, JSON shapes."""

import json
import subprocess
import sys

import pytest


def dstune(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dstune", *args], capture_output=True, text=True, timeout=300, env=env)


def test_help_imports_no_heavy_library():
    code = (
        "import sys; from dstune.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'deepspeed', 'transformers', 'optuna', 'matplotlib', 'pandas') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    result = dstune("--help")
    assert result.returncode == 0 and "estimate" in result.stdout


def test_models_json_lists_names_and_params():
    rows = json.loads(dstune("models", "--json").stdout)
    by_name = {r["name"]: r["params"] for r in rows}
    assert by_name["opt-6.7b"] == 6_658_473_984 and by_name["llama-3-8b"] == 8_030_261_248
    assert {"tiny-opt", "tiny-llama"} <= set(by_name)


def test_gpus_json_has_catalog_and_detected():
    payload = json.loads(dstune("gpus", "--json").stdout)
    assert {"A100-80G", "H100-80G", "H200", "V100-32G"} <= {g["name"] for g in payload["catalog"]}
    assert payload["detected"] == []


def test_estimate_json_for_deepspeed_chat_opt67b_settings():
    result = dstune(
        "estimate",
        "--model",
        "facebook/opt-6.7b",
        "--gpus",
        "8",
        "--gpu-type",
        "A100-80G",
        "--critic-model",
        "opt-350m",
        "--set",
        "actor_zero_stage=3",
        "--set",
        "critic_zero_stage=3",
        "--set",
        "per_device_generation_batch_size=4",
        "--set",
        "per_device_training_batch_size=4",
        "--set",
        "enable_hybrid_engine=true",
        "--set",
        "actor_gradient_checkpointing=true",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    for key in ("model", "gpus", "gpu_type", "step", "plan", "feasible", "memory", "time", "throughput", "mfu"):
        assert key in payload
    assert payload["model"] == "opt-6.7b" and payload["gpu_type"] == "A100-80G" and payload["step"] == "ppo"
    assert payload["plan"]["actor_zero_stage"] == 3
    assert payload["plan_basis"]["non_default_knobs"]["actor_zero_stage"] == 3
    assert set(payload["memory"]) >= {"gpu_peak_bytes", "host_peak_bytes", "gpu"}
    assert payload["time"]["step_s"] == pytest.approx(sum(payload["time"]["phases"].values()))


def test_estimate_human_output_without_gpu_says_what_it_assumed():
    result = dstune("estimate", "--model", "opt-1.3b", "--gpus", "8", "--step", "sft")
    assert result.returncode == 0, result.stderr
    assert "no local GPU detected; assuming A100-80G" in " ".join(result.stdout.split())
    assert "forward" in result.stdout and "samples/s" in result.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--model", "opt-6b", "--gpus", "8"], "close matches: "),
        (["--model", "opt-1.3b", "--gpus", "0"], "--gpus must be a positive integer"),
        (["--model", "opt-1.3b", "--gpus", "12", "--nodes", "5"], "12 % 5 = 2"),
        (["--model", "opt-1.3b", "--gpus", "8", "--set", "actor_zero_stage=9"], "actor_zero_stage=9 is invalid"),
        (["--model", "opt-1.3b", "--gpus", "8", "--set", "actor_zero_stge=3"], "did you mean actor_zero_stage"),
        (
            ["--model", "opt-1.3b", "--gpus", "8", "--set", "inference_tp_size=2", "--set", "enable_hybrid_engine=1"],
            "tp_needs_zero3",
        ),
        (["--model", "opt-1.3b", "--gpus", "8", "--gpu-type", "V100-32G", "--set", "dtype=bf16"], "bf16"),
        (["--model", "opt-1.3b", "--gpus", "8", "--gpu-type", "B999"], "B999"),
        (["--model", "opt-1.3b", "--gpus", "8", "--framework", "verl"], "invalid choice: 'verl'"),
        (["--gpus", "8"], "required: --model"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, fragment):
    result = dstune("estimate", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert fragment in lines[0]


def test_estimate_can_assume_no_hybrid_engine_kernels():
    common = [
        "estimate",
        "--model",
        "opt-6.7b",
        "--gpus",
        "8",
        "--gpu-type",
        "A100-80G",
        "--set",
        "actor_zero_stage=3",
        "--set",
        "enable_hybrid_engine=true",
        "--json",
    ]
    with_kernels = json.loads(dstune(*common, "--he-kernels", "yes").stdout)
    without = json.loads(dstune(*common, "--no-he-kernels").stdout)
    assert with_kernels["he_kernels"] is True and without["he_kernels"] is False
    assert without["time"]["phases"]["generation"] > with_kernels["time"]["phases"]["generation"]
