"""The stack a plan targets, as a user meets it: the main job's first line and pick, --stack's values and refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RUN_13B = [
    "--model", "opt-13b", "--gpus", "8", "--gpu-type", "A100-40G",
    "--set", "actor_zero_stage=3", "--set", "critic_zero_stage=3", "--set", "enable_hybrid_engine=true",
    "--set", "inference_tp_size=2", "--set", "per_device_generation_batch_size=16",
    "--set", "per_device_training_batch_size=16", "--set", "actor_gradient_checkpointing=true",
    "--set", "actor_lora_dim=128", "--set", "actor_lora_module_name=decoder.layers.",
]  # fmt: skip
"""DeepSpeed-Chat's opt/single_node/run_13b.sh (inference_tp_size 2, measured on DeepSpeed 0.9.x)."""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {**os.environ, "DSTUNE_CACHE_DIR": os.environ.get("DSTUNE_CACHE_DIR") or str(tmp_path_factory.mktemp("c"))}


def dstune(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dstune", *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def main_job(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, Path]:
    out = tmp_path_factory.mktemp("main-job")
    done = dstune({**env, "COLUMNS": "200"}, "search", "--model", "opt-6.7b", "--gpus", "8", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads((out / "plan.json").read_text()), out


def test_main_job_names_its_stack_first_and_beats_the_shipped_script(main_job) -> None:
    text, plan, out = main_job
    assert text.splitlines()[0].startswith("target stack: he (deepspeed 0.19.8, transformers 4.48.3)")
    assert plan["stack"]["name"] == "he" and plan["he_kernels"] is True
    assert plan["baseline"]["known_issues"] == [] and plan["speedup_over_baseline"]["value"] >= 1.0
    assert "transformers==4.48.3" in (out / "requirements.txt").read_text().splitlines()


@pytest.mark.parametrize(
    "args, says",
    [
        (("search", "--model", "opt-1.3b", "--gpus", "1", "--stack", "dschat-2099"), "--stack dschat-2099: no such"),
        (("estimate", "--model", "opt-1.3b", "--gpus", "1", "--stack", "/no/such/file"), "no such file"),
    ],
)
def test_a_bad_stack_is_exit_2_and_one_line(env: dict[str, str], args: tuple[str, ...], says: str) -> None:
    done = dstune(env, *args)
    assert done.returncode == 2 and says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_profile_refuses_another_stack(env: dict[str, str], tmp_path: Path) -> None:
    args = ["search", "--model", "tiny-opt", "--gpus", "1", "--backend", "profile", "--stack", "he"]
    done = dstune({**env, "DS_ACCELERATOR": "cpu"}, *args, "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "profile measures this machine's stack" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_run_13b_with_tp_fits_on_dschat_2023_and_is_refused_on_he(env: dict[str, str]) -> None:
    old = dstune(env, "estimate", *RUN_13B, "--stack", "dschat-2023", "--json")
    assert old.returncode == 0, old.stderr
    payload = json.loads(old.stdout)
    assert payload["stack"]["name"] == "dschat-2023"
    assert payload["memory"]["gpu_peak_bytes"] <= payload["memory"]["gpu_capacity_bytes"]
    new = dstune(env, "estimate", *RUN_13B, "--stack", "he")
    assert new.returncode == 2 and "he_tp_cannot_shard" in new.stderr and "stack he's DeepSpeed 0.19.8" in new.stderr


def test_a_saved_doctor_json_is_the_stack_as_it_is(env: dict[str, str], tmp_path: Path) -> None:
    """A cluster's `dstune doctor --json`: its own verdict, not the one recorded for the same versions."""
    doctor = dstune(env, "doctor", "--json")
    assert doctor.returncode == 0, doctor.stderr
    data = json.loads(doctor.stdout)
    data["versions"]["transformers"] = "4.48.3"  # as on a cluster with he's versions ...
    data["hybrid_engine"]["opt"]["verdict"] = "no kernels"  # ... whose own probe found no OPT kernels
    saved = tmp_path / "stack.json"
    saved.write_text(json.dumps(data), encoding="utf-8")
    args = ["estimate", "--model", "opt-1.3b", "--gpus", "8", "--set", "enable_hybrid_engine=true", "--json"]
    payload = json.loads(dstune(env, *args, "--stack", str(saved)).stdout)
    assert payload["he_kernels"] is False and "probed by dstune doctor where stack.json" in payload["he_kernels_note"]
    assert payload["stack"]["requires"]["transformers"] == "==4.48.3"


def test_main_job_says_what_this_machines_stack_gives(main_job) -> None:
    """Target he differs from this machine where it matters (the HE verdict): both answers, with numbers."""
    from dstune.doctor import local_stack

    text, plan, _ = main_job
    local = local_stack()
    if local.he_verdict("opt") == "kernels" and local.version("deepspeed") == "0.19.8":
        assert not any(n.startswith("stacks: ") for n in plan["notes"])
        return
    line = next(n for n in plan["notes"] if n.startswith("stacks: "))
    ratio = f"{plan['speedup_over_baseline']['value']:.2f}x the shipped script"
    assert line.startswith(
        f"stacks: on he (deepspeed 0.19.8, transformers 4.48.3), pinned in requirements.txt, the pick is {ratio}"
    )
    assert f"on this machine's {local.label} opt's Hybrid Engine verdict is {local.he_verdict('opt')}" in line
    assert "the best plan there is " in line and line in " ".join(text.split()).replace("note: ", "")
