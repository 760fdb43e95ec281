"""Study directories made the way `dstune search` makes them: a real search, a real Optuna
SQLite study and the real export writer (dstune.record owns the files).

`backend="simulate"` is the exact simulate search. `backend="profile"` cannot run GPUs
here, so `GpuStandIn` answers for them through the real Backend interface: the cost
model's prediction with seeded noise as the "measurement" (5% more memory), out of
memory over the card, and one timeout.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.costmodel import estimate
from dstune.export import ExportInfo, write_export
from dstune.record import Basis, Figures
from dstune.search import Backend, SearchRequest, Setup, SimulateBackend, TrialRecord, load_space, run_search

SPACE = {
    "step": "ppo",
    "workload": {"max_prompt_seq_len": 256, "max_answer_seq_len": 256, "dtype": "fp16"},
    "batch": {"policy": "baseline"},
    "knobs": {
        "actor_zero_stage": [2, 3],
        "critic_zero_stage": [2, 3],
        "offload": [False, True],
        "enable_hybrid_engine": [False, True],
        "inference_tp_size": [1, 2],
        "per_device_generation_batch_size": [1, 2, 4],
        "per_device_training_batch_size": [1, 2, 4],
        "actor_gradient_checkpointing": [False, True],
    },
    "explore": {
        "lora": {"knobs": {"actor_lora_dim": [0, 128], "only_optimize_lora": [False, True]}},
        "batch": {
            "batch": {"policy": "token_cap", "max_tokens": 524288},
            "knobs": {"per_device_generation_batch_size": [4, 8, 16, 32], "per_device_training_batch_size": [4, 8, 16]},
        },
    },
}


class GpuStandIn(Backend):
    """Stands in for GPUs this machine does not have: noisy cost-model figures filed as measurements."""

    name = "profile"
    costly = False
    measures = True

    def __init__(self, setup: Setup, cap: float, seed: int):
        self.setup, self.cap, self.rng = setup, cap, random.Random(seed)
        self.device = "NVIDIA A100-SXM4-40GB"
        self.calls = 0

    def evaluate(self, plan: Any) -> TrialRecord:
        self.calls += 1
        s = self.setup
        e = estimate(plan, s.model, s.cluster, critic_model=s.critic_model)
        if e.gpu_peak_bytes * 1.05 > s.cluster.gpu.memory_bytes:
            return TrialRecord(status="oom", reason="CUDA out of memory", details={"device": self.device})
        if self.calls == 5:
            return TrialRecord(status="timeout", reason="killed after 900 s", details={"device": self.device})
        scale = math.exp(self.rng.gauss(-0.1, 0.15))
        figures = Figures(
            basis=Basis.MEASURED,
            samples_per_s=e.samples_per_s * scale,
            tokens_per_s=e.tokens_per_s * scale,
            gpu_peak_bytes=e.gpu_peak_bytes * 1.05,
            step_s=e.step_s / scale,
            phases={k: v / scale for k, v in e.phases.items()},
            mfu=e.mfu * scale,
        )
        return TrialRecord(status="ok", figures=figures, details={"device": self.device})


def make_study_dir(
    root: Path,
    *,
    model: str = "opt-1.3b",
    gpus: int = 8,
    gpu_type: str = "A100-40G",
    backend: str = "simulate",
    n_trials: int = 24,
    seed: int = 0,
    model_label: str | None = None,
    importance: bool = True,
    explore: tuple[str, ...] = (),
) -> Path:
    """Run a real PPO search into `root` and return it. `model_label` overrides the model name in
    plan.json afterwards (e.g. an HTML-injection string)."""
    root.mkdir(parents=True, exist_ok=True)
    space_file = root.parent / f"{root.name}-space.yaml"
    space_file.write_text(yaml.safe_dump(SPACE))
    space = load_space(space_file, "ppo").widen(explore)
    cluster = make_cluster(load_gpu(gpu_type), gpus)
    setup = Setup(step="ppo", model=load_model(model), critic_model=load_model("opt-350m"), cluster=cluster)
    cap = cluster.gpu.memory_bytes * 0.9
    if backend == "simulate":
        chosen: Backend = SimulateBackend(
            model=setup.model, critic_model=setup.critic_model, cluster=cluster, cap_bytes=cap
        )
    else:
        chosen = GpuStandIn(setup, cap, seed)
    study_name = f"{model}-{gpus}x{gpu_type}-ppo-{backend}"
    storage = f"sqlite:///{root.resolve()}/study.db"
    req = SearchRequest(
        setup=setup,
        space=space,
        backend=chosen,
        storage=storage,
        study_name=study_name,
        trials=n_trials,
        seed=seed,
        sampler="random",
        known_issues="off",  # rendering tests: not the installed stack's known issues (e.g. a broken HE verdict)
    )
    result = run_search(req)
    info = ExportInfo(
        backend=backend,
        backend_note="test study",
        storage=storage,
        study_name=study_name,
        headroom=0.1,
        hardware=cluster.gpu.name,
        hardware_label=f"{gpus} x {cluster.gpu.name}",
    )
    write_export(result, root, info)
    if model_label is not None:
        meta = json.loads((root / "plan.json").read_text())
        meta["model"] = model_label
        (root / "plan.json").write_text(json.dumps(meta, indent=2))
    if not importance:
        (root / "study.db").unlink()
    return root


@pytest.fixture(scope="session")
def sim_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_dir(tmp_path_factory.mktemp("sim") / "opt-2.7b-8", model="opt-2.7b", seed=1)


@pytest.fixture(scope="session")
def sim16_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_dir(
        tmp_path_factory.mktemp("sim16") / "opt-2.7b-16", model="opt-2.7b", gpus=16, seed=2, importance=False
    )


@pytest.fixture(scope="session")
def profile_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_dir(
        tmp_path_factory.mktemp("prof") / "profiled", model="opt-6.7b", backend="profile", n_trials=40
    )


@pytest.fixture(scope="session")
def explore_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_dir(
        tmp_path_factory.mktemp("explore") / "explored", model="opt-2.7b", seed=3, explore=("lora", "batch")
    )


@pytest.fixture(scope="session")
def study_factory() -> Callable[..., Path]:
    """`make_study_dir` itself, for tests that need a study with their own twist."""
    return make_study_dir
