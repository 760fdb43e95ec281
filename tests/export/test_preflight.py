"""The exported launch script checks the target stack before `deepspeed` starts, run for real with bash.

A stand-in `deepspeed` first on PATH records whether it was called; the script's preflight runs in this
interpreter (PYTHON=sys.executable), which reads the installed versions from package metadata.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from dstune.catalog import load_gpu, load_model, make_cluster, named_stack
from dstune.export._pins import preflight_lines, requirements_text
from dstune.export._script import launch_script
from dstune.plan import make_plan


def _search(out: Path, stack_file: Path) -> Path:
    from dstune.cli import main

    args = ["search", "--model", "opt-1.3b", "--gpus", "1", "--stack", str(stack_file), "--out", str(out)]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `deepspeed` on PATH that only writes a marker when called."""
    bin_dir = tmp_path_factory.mktemp("bin")
    fake = bin_dir / "deepspeed"
    fake.write_text('#!/bin/bash\necho called > "$DEEPSPEED_MARKER"\n', encoding="utf-8")
    fake.chmod(0o755)
    return bin_dir


def _launch(script: Path, stand_in: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, bool, float]:
    marker = tmp_path / "deepspeed-was-called"
    env = {
        **os.environ,
        "PATH": f"{stand_in}:{os.environ['PATH']}",
        "PYTHON": sys.executable,
        "DEEPSPEED_MARKER": str(marker),
    }
    env.pop("DSTUNE_SKIP_PREFLIGHT", None)
    critic = tmp_path / "step2-output"  # the script checks for a step-2 output before it launches
    critic.mkdir(exist_ok=True)
    (critic / "pytorch_model.bin").write_bytes(b"")
    start = time.perf_counter()
    done = subprocess.run(
        ["bash", str(script), "facebook/opt-1.3b", str(critic), str(tmp_path / "output")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, marker.exists(), time.perf_counter() - start


def _freeze(path: Path, transformers: str) -> Path:
    """This environment's versions, but the given transformers: a cluster's pip freeze that differs in one pin."""
    lines = [f"{p}=={metadata.version(p)}" for p in ("deepspeed", "torch")] + [f"transformers=={transformers}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_different_transformers_exits_2_before_deepspeed(stand_in: Path, tmp_path: Path) -> None:
    installed = metadata.version("transformers")
    pinned = "4.48.3" if installed != "4.48.3" else "5.25.0"
    out = _search(tmp_path / "out", _freeze(tmp_path / "freeze.txt", pinned))
    requirements = (out / "requirements.txt").read_text(encoding="utf-8")
    assert f"transformers=={pinned}" in requirements.splitlines()
    assert json.loads((out / "plan.json").read_text())["stack"]["requires"]["transformers"] == f"=={pinned}"
    done, called, seconds = _launch(out / "run_step3.sh", stand_in, tmp_path)
    assert done.returncode == 2 and not called and seconds < 10, (done.returncode, called, seconds, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dstune preflight: ")
    assert f"transformers {installed} (pinned =={pinned})" in lines[0]
    assert "deepspeed" not in lines[0].split(":", 1)[1].split("pip install")[0], "deepspeed matches: not named"


def test_the_matching_stack_launches(stand_in: Path, tmp_path: Path) -> None:
    out = _search(tmp_path / "out", _freeze(tmp_path / "freeze.txt", metadata.version("transformers")))
    done, called, _ = _launch(out / "run_step3.sh", stand_in, tmp_path)
    assert done.returncode == 0 and called, done.stderr


@pytest.mark.parametrize("step", ["sft", "rm", "dpo"])
def test_every_step_script_checks_before_deepspeed(step: str) -> None:
    model = load_model("opt-1.3b")
    critic = load_model("opt-350m") if step == "rm" else None
    text = launch_script(
        make_plan(step, {}),
        model=critic or model,
        critic_model=None,
        cluster=make_cluster(load_gpu("A100-80G"), 8),
        preflight=preflight_lines(named_stack("he")),
    )
    assert text.index("DSTUNE_PREFLIGHT") < text.index("deepspeed --num_gpus")
    assert '"transformers": "==4.48.3"' in text


def test_requirements_pin_the_named_stack() -> None:
    text = requirements_text(named_stack("he"))
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == [
        "deepspeed==0.19.8",
        "transformers==4.48.3",
        "torch>=2.13",
        "tokenizers>=0.21,<0.22",
        "huggingface-hub>=0.24,<1.0",
    ]


def test_openrlhf_script_pins_openrlhfs_stack_and_checks_it(stand_in: Path, tmp_path: Path) -> None:
    """run_openrlhf.sh: OpenRLHF 0.11.2's own pins in requirements.txt, checked before `ray job submit`."""
    from dstune.cli import main

    out = tmp_path / "out"
    argv = ["search", "--framework", "openrlhf", "--model", "llama-3-8b", "--gpus", "8", "--gpu-type", "H100-80G"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "openrlhf==0.11.2" in (out / "requirements.txt").read_text().splitlines()
    assert json.loads((out / "plan.json").read_text())["stack"]["name"] == "openrlhf-0.11.2"
    script = (out / "run_openrlhf.sh").read_text()
    assert script.index("DSTUNE_PREFLIGHT") < script.index("ray job submit")
    ray = stand_in / "ray"
    ray.write_text('#!/bin/bash\necho called > "$DEEPSPEED_MARKER"\n', encoding="utf-8")
    ray.chmod(0o755)
    done, called, _ = _launch(out / "run_openrlhf.sh", stand_in, tmp_path)
    assert done.returncode == 2 and not called and "openrlhf not installed (pinned ==0.11.2)" in done.stderr
