"""Profiler tests launch real DeepSpeed (CPU accelerator, gloo) through the real launchers."""

from __future__ import annotations

import pytest

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.plan import make_plan

TINY_PPO = {
    "dtype": "bf16",
    "max_prompt_seq_len": 16,
    "max_answer_seq_len": 8,
    "per_device_generation_batch_size": 2,
    "per_device_training_batch_size": 2,
}
TINY_TRAIN = {"dtype": "bf16", "max_seq_len": 24, "per_device_train_batch_size": 2}


@pytest.fixture
def cpu_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")


def cluster(world: int):
    return make_cluster(load_gpu("A100-80G"), world)


def plan(step: str, **values):
    base = TINY_PPO if step == "ppo" else TINY_TRAIN
    return make_plan(step, {**base, **values})


def model(name: str):
    return load_model(name)
