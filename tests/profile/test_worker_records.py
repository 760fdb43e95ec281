"""What a rank records besides time: skipped optimizer updates, per-phase peaks, and the HE probe from the
doctor's cache only (real DeepSpeed engines on the CPU accelerator, in a process of their own)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dstune.profile._ppo import HybridEngineStartError, he_startup_fallback

ROOT = Path(__file__).resolve().parents[2]

STEPS = """
import json, os, torch, deepspeed
from dstune.profile.worker import _doctor_findings, _run_steps

for k, v in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}.items():
    os.environ.setdefault(k, v)
deepspeed.init_distributed()
config = {"train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": 0}}

def engine(trains):
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1))
    optimizer = torch.optim.AdamW(model.parameters()) if trains else None
    return deepspeed.initialize(model=model, optimizer=optimizer, config=config)[0]

class Step:
    def __init__(self):
        self.actor, self.reward, self.runs = engine(True), engine(False), 0

    def run(self, timer):
        self.runs += 1
        x = torch.randn(2, 64)
        with timer.phase("forward"):
            loss = self.actor(x).sum() + self.reward(x).sum().detach()
        with timer.phase("backward"):
            self.actor.backward(loss)
        with timer.phase("step"):
            self.actor.step()
        if self.runs == 3:  # what DeepSpeed's _take_model_step does on an fp16 overflow (no CPU fp16 here)
            self.actor.skipped_steps += 1

step = Step()
step.actor.skipped_steps = 5  # skips in the warm-up are not the measured steps'
phases, walls, timer = _run_steps(step, 1, 2)
print(json.dumps({"skipped": timer.skipped, "peaks": timer.peaks, "overall": timer.overall,
                  "probe": _doctor_findings({"model": {"hf_config": {"model_type": "opt"}}})[1]}))
"""


def _run_in_own_group(argv: list[str], env: dict[str, str], timeout_s: float) -> tuple[int, str, str]:
    """Run argv in a session of its own and end the whole group on timeout: DeepSpeed's first use JIT-builds
    its CPU comm op, and an orphaned compiler would leave the shared extensions lock behind."""
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return proc.returncode, out, err


@pytest.mark.slow
@pytest.mark.timeout(660)
def test_skipped_updates_phase_peaks_and_a_cache_only_probe(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DS_ACCELERATOR": "cpu", "DSTUNE_CACHE_DIR": str(tmp_path)}
    env["MASTER_PORT"] = "29631"
    code, out, err = _run_in_own_group([sys.executable, "-c", STEPS], env, 600)
    assert code == 0, err[-3000:]
    found = json.loads(out.strip().splitlines()[-1])
    assert found["skipped"] == {"actor": 1}  # the training engine only, counted over the measured steps
    assert set(found["peaks"]) == {"forward", "backward", "step"} and all(v > 0 for v in found["peaks"].values())
    assert found["overall"] >= max(found["peaks"].values())
    # an empty cache: the worker says so and does not build an HE engine inside the trial
    assert found["probe"]["policy_found"] is None and found["probe"]["source"] == "none"
    assert "dstune doctor" in found["probe"]["reason"]


def test_hybrid_engine_start_failure_fails_a_cuda_trial_and_is_said_on_the_cpu() -> None:
    error = RuntimeError("This op had not been implemented on CPU backend.")
    with pytest.raises(HybridEngineStartError, match="fails rather than"):
        he_startup_fallback("cuda", error)
    assert "measured with hybrid_engine disabled" in he_startup_fallback("cpu", error)
