"""Study directories (plan.json, trials.csv, study.db) built as `dstune search` writes them.

Figures come from the real cost model on real plans; the Optuna study is a real
SQLite storage. `backend="profile"` adds "measurements": predictions with noise.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.costmodel import PPO_PHASES, estimate, estimate_table, plans_to_columns
from dstune.plan import Context, knob_fields, make_plan, plan_to_dict, violations

SPACE: dict[str, tuple[Any, ...]] = {
    "actor_zero_stage": (2, 3),
    "critic_zero_stage": (2, 3),
    "offload": (False, True),
    "enable_hybrid_engine": (False, True),
    "inference_tp_size": (1, 2),
    "per_device_generation_batch_size": (4, 8, 16, 32),
    "per_device_training_batch_size": (4, 8, 16),
    "actor_gradient_checkpointing": (False, True),
    "actor_lora_dim": (0, 128),
}
BASELINE = {"actor_zero_stage": 3, "critic_zero_stage": 3, "per_device_generation_batch_size": 4,
            "per_device_training_batch_size": 4, "enable_hybrid_engine": True, "actor_gradient_checkpointing": True}
METRICS = ("samples_per_s", "tokens_per_s", "gpu_peak_bytes", "step_s")


def _sample(rng: random.Random) -> dict[str, Any]:
    return {name: rng.choice(choices) for name, choices in SPACE.items()}


def _row_metrics(table: dict, i: int, prefix: str, scale: float = 1.0) -> dict[str, Any]:
    """One trial's figures as `dstune search` writes them: <prefix>_<metric>, <prefix>_mfu, <prefix>_time_<phase>.
    `scale` < 1 makes a "measurement" slower than predicted (and 5% more memory)."""
    out = {f"{prefix}_{m}": float(table[m][i]) for m in METRICS}
    out[f"{prefix}_mfu"] = float(table["mfu"][i]) * scale
    out.update({f"{prefix}_time_{p}": float(table[f"time_{p}"][i]) / scale for p in PPO_PHASES})
    if scale != 1.0:
        out[f"{prefix}_samples_per_s"] *= scale
        out[f"{prefix}_tokens_per_s"] *= scale
        out[f"{prefix}_step_s"] /= scale
        out[f"{prefix}_gpu_peak_bytes"] *= 1.05
    return out


def make_study_dir(root: Path, *, model: str = "opt-1.3b", gpus: int = 8, gpu_type: str = "A100-40G",
                   backend: str = "simulate", n_trials: int = 24, seed: int = 0, model_label: str | None = None,
                   importance: bool = True) -> Path:
    """Write a PPO study directory under `root` and return it. `model_label` overrides the model
    name written to plan.json (e.g. an HTML-injection string)."""
    rng = random.Random(seed)
    actor, critic = load_model(model), load_model("opt-350m")
    cluster = make_cluster(load_gpu(gpu_type), gpus)
    cap = cluster.gpu.memory_bytes * 0.9
    ctx = Context(world_size=gpus, model=actor, critic_model=critic)
    knobs = [dict(BASELINE)] + [_sample(rng) for _ in range(n_trials - 1)]
    plans = [make_plan("ppo", k) for k in knobs]
    table = estimate_table("ppo", plans_to_columns(plans), actor, cluster, critic_model=critic)
    rows, names = [], [f.name for f in knob_fields("ppo")]
    measured = backend != "simulate"
    for i, plan in enumerate(plans):
        broken = violations(plan, ctx)
        over = table["gpu_peak_bytes"][i] > cap
        if measured:  # a profiled trial over the cap runs out of memory; one times out
            status = "infeasible" if broken else "oom" if over else ("timeout" if i == 5 else "ok")
        else:  # simulate files over-cap plans as infeasible, with their figures
            status = "infeasible" if broken or over else "ok"
        row: dict[str, Any] = {"number": i, "status": status, "source": "baseline" if i == 0 else "sampler"}
        row.update(plan_to_dict(plan))
        if not broken:
            row.update(_row_metrics(table, i, "predicted"))
            if not measured:  # simulate writes the cost model's answer under measured_* as well
                row.update(_row_metrics(table, i, "measured"))
        if measured and status == "ok":
            row.update(_row_metrics(table, i, "measured", scale=math.exp(rng.gauss(-0.1, 0.15))))
        row["reason"] = broken[0] if broken else ("predicted peak over the memory cap" if over else "")
        rows.append(row)
    repeat = next(r for r in rows[1:] if r["status"] == "ok")
    rows.append({**repeat, "number": len(rows), "source": "repeat", "reason": f"repeat of trial {repeat['number']}"})
    root.mkdir(parents=True, exist_ok=True)
    columns = ["number", "status", "source", *names]
    for prefix in ("predicted", "measured"):
        columns += [f"{prefix}_{m}" for m in (*METRICS, "mfu")] + [f"{prefix}_time_{p}" for p in PPO_PHASES]
    columns += ["p_fit", "reason", "step", "model", "gpus", "extra_column"]
    with open(root / "trials.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)

    study_name = f"ppo-{model}-{gpus}x{gpu_type}"
    if importance:
        _write_optuna(root / "study.db", study_name, rows)
    ok = [r for r in rows if r["status"] == "ok"]
    best = max(ok, key=lambda r: r["measured_samples_per_s"])
    pick = plans[best["number"]]
    est = lambda p: estimate(p, actor, cluster, critic_model=critic).to_json()  # noqa: E731

    def measured_block(r: dict[str, Any]) -> dict[str, Any] | None:
        if not measured or r["status"] != "ok":
            return None
        block = est(plans[r["number"]])
        block["throughput"] = {"samples_per_s": r["measured_samples_per_s"], "tokens_per_s": r["measured_tokens_per_s"]}
        block["memory"]["gpu_peak_bytes"] = r["measured_gpu_peak_bytes"]
        block["time"] = {"step_s": r["measured_step_s"], "phases": {p: r[f"measured_time_{p}"] for p in PPO_PHASES}}
        return block

    meta = {
        "step": "ppo", "model": model_label or model, "critic_model": critic.name, "gpus": gpus,
        "nodes": cluster.nodes, "gpu_type": cluster.gpu.name, "backend": backend,
        "study": study_name if not measured else {"name": study_name, "storage": "sqlite:////elsewhere/study.db"},
        "headroom": 0.1, "memory_cap_bytes": cap, "versions": {"dstune": "0.1.0", "optuna": optuna.__version__},
        "created": "2026-11-23T17:00:00+00:00", "plan": plan_to_dict(pick), "predicted": est(pick),
        "measured": measured_block(best),
        "baseline": {"plan": plan_to_dict(plans[0]), "predicted": est(plans[0]), "measured": measured_block(rows[0])},
    }
    (root / "plan.json").write_text(json.dumps(meta, indent=2))
    return root


def _write_optuna(db: Path, name: str, rows: list[dict[str, Any]]) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if db.exists():
        db.unlink()
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{db}", directions=["maximize", "minimize"])
    dists = {k: optuna.distributions.CategoricalDistribution(v) for k, v in SPACE.items()}
    trials = []
    for r in rows:
        params = {k: r[k] for k in SPACE}
        if r["status"] == "ok":
            value = r["measured_samples_per_s"]
            trials.append(optuna.trial.create_trial(params=params, distributions=dists,
                                                    values=[value, r["predicted_gpu_peak_bytes"]]))
        else:
            trials.append(optuna.trial.create_trial(params=params, distributions=dists,
                                                    state=optuna.trial.TrialState.FAIL))
    study.add_trials(trials)


@pytest.fixture(scope="session")
def sim_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_dir(tmp_path_factory.mktemp("sim") / "opt-2.7b-8", model="opt-2.7b", n_trials=40, seed=1)


@pytest.fixture(scope="session")
def sim16_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_dir(tmp_path_factory.mktemp("sim16") / "opt-2.7b-16", model="opt-2.7b", gpus=16,
                          n_trials=30, seed=2, importance=False)


@pytest.fixture(scope="session")
def profile_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_dir(tmp_path_factory.mktemp("prof") / "profiled", model="opt-2.7b", backend="profile",
                          n_trials=40)


@pytest.fixture(scope="session")
def study_factory() -> Callable[..., Path]:
    """`make_study_dir` itself, for tests that need a study with their own twist."""
    return make_study_dir
