"""`dstune doctor` and the HE assumption of `dstune estimate`, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {**os.environ, "DSTUNE_CACHE_DIR": str(tmp_path_factory.mktemp("dstune-cache"))}


def dstune(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dstune", *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def doctor_json(env: dict[str, str]) -> dict:
    result = dstune(env, "doctor", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_doctor_json_lists_versions_he_status_and_known_issues(doctor_json: dict) -> None:
    assert {"python", "torch", "torch_cuda", "nccl", "deepspeed", "transformers", "optuna"} <= set(
        doctor_json["versions"]
    )
    assert set(doctor_json["hybrid_engine"]) == {"opt", "llama", "qwen2", "mistral"}
    for status in doctor_json["hybrid_engine"].values():
        assert status["policy_found"] in (True, False) and status["consequence"] and "kernels" not in status
    assert doctor_json["known_issues"] and all(i["sources"] for i in doctor_json["known_issues"])
    assert {"memory_bytes", "memlock_bytes", "shm_bytes"} <= set(doctor_json["host"])
    assert {op["name"] for op in doctor_json["ops"]} == {"cpu_adam", "fused_adam", "transformer_inference"}
    assert all(f["consequence"] for f in doctor_json["findings"])


def test_cached_doctor_takes_seconds_and_table_names_each_family(env: dict[str, str], doctor_json: dict) -> None:
    start = time.perf_counter()
    result = dstune(env, "doctor")
    assert result.returncode == 0, result.stderr
    assert time.perf_counter() - start < 60  # generous: the probe is cached; only imports remain
    text = " ".join(result.stdout.split())
    assert "HE opt" in text and "HE llama" in text and "known issue" in text


@pytest.mark.parametrize(
    "flags, kernels, says",
    [
        ((), None, "on stack local"),
        (("--he-kernels", "yes"), True, "--he-kernels yes"),
        (("--he-kernels", "no"), False, "--he-kernels no"),
        (("--no-he-kernels",), False, "--he-kernels no"),
    ],
)
def test_estimate_takes_the_doctors_he_status_unless_told(
    env: dict[str, str], doctor_json: dict, flags, kernels, says
) -> None:
    """--stack local: this machine's probed verdict, as before target stacks."""
    result = dstune(
        env,
        "estimate",
        "--stack",
        "local",
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
        *flags,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    expected = doctor_json["hybrid_engine"]["opt"]["policy_found"] if kernels is None else kernels
    assert payload["he_kernels"] is expected and says in payload["he_kernels_note"]


def test_estimate_without_he_makes_no_assumption(env: dict[str, str]) -> None:
    result = dstune(env, "estimate", "--model", "opt-1.3b", "--gpus", "8", "--json")
    payload = json.loads(result.stdout)
    assert payload["he_kernels"] is None and payload["he_kernels_note"] is None


def test_human_estimate_says_which_assumption(env: dict[str, str], doctor_json: dict) -> None:
    result = dstune(
        env,
        "estimate",
        "--stack",
        "local",
        "--model",
        "llama-2-7b",
        "--gpus",
        "8",
        "--set",
        "actor_zero_stage=3",
        "--set",
        "enable_hybrid_engine=true",
    )
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert text.startswith("target stack: local (") and "inference kernels" in text and "on stack local" in text
    if doctor_json["hybrid_engine"]["llama"]["verdict"] == "broken":
        assert "BROKEN ON STACK local (he_broken_stack)" in text and "constraints/he.txt" in text


def test_estimate_json_names_a_broken_he_stack(env: dict[str, str], doctor_json: dict) -> None:
    args = ["estimate", "--stack", "local", "--model", "opt-1.3b", "--gpus", "8", "--set", "enable_hybrid_engine=true"]
    payload = json.loads(dstune(env, *args, "--json").stdout)
    broken = doctor_json["hybrid_engine"]["opt"]["verdict"] == "broken"
    assert [i["id"] for i in payload["broken_on_target_stack"]] == (["he_broken_stack"] if broken else [])
    assert payload["stack"]["name"] == "local"
    off = json.loads(dstune(env, *args[:-2], "--set", "enable_hybrid_engine=false", "--json").stdout)
    assert off.get("broken_on_target_stack", []) == []


def test_estimate_targets_the_reference_stack_by_default(env: dict[str, str]) -> None:
    """Without --stack, estimate predicts for constraints/he.txt's stack, whatever is installed here."""
    args = ["estimate", "--model", "opt-1.3b", "--gpus", "8", "--set", "enable_hybrid_engine=true", "--json"]
    payload = json.loads(dstune(env, *args).stdout)
    assert payload["stack"]["name"] == "he" and payload["stack"]["he_verdicts"]["opt"] == "kernels"
    assert payload["he_kernels"] is True and payload["broken_on_target_stack"] == []
    assert "on stack he (deepspeed 0.19.8, transformers 4.48.3)" in payload["he_kernels_note"]


def test_estimate_does_not_import_torch_once_the_probe_is_cached(env: dict[str, str], doctor_json: dict) -> None:
    code = (
        "import sys; from dstune.cli import main; main(['estimate', '--model', 'opt-1.3b', '--gpus', '8', "
        "'--set', 'enable_hybrid_engine=true', '--json']); "
        "print(sorted(m for m in ('torch', 'deepspeed', 'transformers') if m in sys.modules), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "[]"
