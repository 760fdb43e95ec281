"""The target stack's transformers reaches the cost model: a forward's KV cache is a fact of the stack that will
train (transformers 4.x drops it in a checkpointed training forward; 5.x keeps it), not of this machine's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLAN = [
    *("--set", "actor_zero_stage=2", "--set", "critic_zero_stage=2", "--set", "actor_gradient_checkpointing=true"),
    *("--set", "per_device_generation_batch_size=32", "--set", "per_device_training_batch_size=4"),
    *("--set", "enable_hybrid_engine=false"),
]


def _experience_peak(tmp_path: Path, transformers: str) -> tuple[float, str]:
    freeze = tmp_path / f"freeze-{transformers}.txt"
    freeze.write_text(f"deepspeed==0.19.8\ntransformers=={transformers}\ntorch==2.13.0\n", encoding="utf-8")
    argv = [sys.executable, "-m", "dstune", "estimate", "--model", "opt-6.7b", "--gpus", "8", "--stack", str(freeze)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DSTUNE_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([*argv, *PLAN, "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    memory = json.loads(done.stdout)["memory"]
    return memory["gpu_peak_bytes"], memory["peak_phase"]


def test_estimate_counts_the_target_stacks_kv_cache(tmp_path: Path) -> None:
    old_peak, old_phase = _experience_peak(tmp_path, "4.48.3")
    new_peak, new_phase = _experience_peak(tmp_path, "5.25.0")
    assert old_phase == new_phase == "experience"
    # 5.x also keeps the actor's checkpointed forward cache: 8 GiB more at generation batch 32 (OPT-6.7B, 512 tokens)
    assert 7.5 * 2**30 < new_peak - old_peak < 9 * 2**30
