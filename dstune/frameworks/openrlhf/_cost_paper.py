"""The OpenRLHF paper's runs (arXiv 2405.11143, Table 3's placements, Table 5's seconds per phase) re-predicted,
and the two constants they can fit: one factor per phase, least squares in log seconds, with leave-one-out.

Three rows and one constant per phase: enough to set a scale, not to separate terms. What the rows leave
open (lengths, answer lengths, the fabric) is assumed as data/published.yaml's caveats say.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...catalog import load_gpu, load_model, make_cluster
from ._cost import estimate_openrlhf
from ._cost_constants import DEFAULT_OPENRLHF_CONSTANTS, OpenRLHFConstants
from ._plan import OpenRLHFJob, make_plan
from ._spec import PaperRow, paper_rows

PHASES = ("generate", "weight sync", "experience", "train")
FITTED = {"train": "train_time_factor", "weight sync": "weight_sync_bytes_per_s"}
GPU = "A100-80G"
"""The catalog's nearest card to the paper's A800 (same HBM and FLOPs; NVLink 400 GB/s there, 600 here)."""


def paper_plan(row: PaperRow) -> Any:
    """Table 3's placement as OpenRLHF 0.11.2 flags; PPO with a critic, lengths of that era's scripts."""
    values: dict[str, Any] = {
        "algo.advantage.estimator": "gae",
        "rollout.batch_size": 1024,
        "train.batch_size": 128,
        "train.micro_batch_size": row.micro_train,
        "rollout.micro_batch_size": row.micro_rollout,
        "data.max_len": 2048,
        "rollout.max_new_tokens": 1024,
        "vllm.num_engines": row.vllm_engines,
        "vllm.tensor_parallel_size": row.vllm_tp,
        "ds.zero_stage": row.zero_stage,
        "ds.adam_offload": row.adam_offload,
        "ref.offload": row.frozen_offload,
        "reward.offload": row.frozen_offload,
    }
    for role in ("actor", "critic", "ref", "reward"):
        values |= {f"{role}.num_nodes": 1, f"{role}.num_gpus_per_node": getattr(row, role)}
    return make_plan(values, OpenRLHFJob(reward="model", prompt_tokens=1024, answer_mean_ratio=0.5))


def published(row: PaperRow) -> dict[str, float]:
    return dict(zip(PHASES, (row.generate_s, row.weight_sync_s, row.experience_s, row.train_s), strict=True))


def predict(row: PaperRow, oc: OpenRLHFConstants = DEFAULT_OPENRLHF_CONSTANTS) -> dict[str, Any]:
    """Predicted seconds per phase (and the parts) of one paper run."""
    spec = load_model(row.model)
    table = estimate_openrlhf([paper_plan(row)], spec, spec, make_cluster(load_gpu(GPU), row.gpus), oc=oc)
    return table.row(0)


@dataclass(frozen=True)
class PhaseFit:
    phase: str
    constant: str
    fitted: float
    default: float
    ratios: tuple[float, ...]
    """predicted / published per row at the default constants."""
    loo_ratios: tuple[float, ...]
    """predicted / published per row with the constant fitted to the other two rows."""


def _seconds(rows: tuple[PaperRow, ...], phase: str, oc: OpenRLHFConstants) -> np.ndarray:
    return np.array([predict(r, oc)["phases_s"][phase] for r in rows])


def _fit_train(rows: tuple[PaperRow, ...], at_one: np.ndarray, keep: np.ndarray) -> float:
    """Training is linear in its factor: the log least-squares factor is the geometric mean of the ratios."""
    target = np.array([r.train_s for r in rows])
    return float(math.exp(np.mean(np.log(target[keep] / at_one[keep]))))


def _fit_sync(rows: tuple[PaperRow, ...], fixed: np.ndarray, moved: np.ndarray, keep: np.ndarray) -> float:
    """Weight sync is fixed + bytes / rate (the link never binds at these rates): search the rate on a log grid."""
    target = np.array([r.weight_sync_s for r in rows])[keep]
    rates = np.logspace(8, 11, 3001)
    pred = fixed[keep][None, :] + moved[keep][None, :] / rates[:, None]
    loss = np.sum(np.log(pred / target[None, :]) ** 2, axis=1)
    return float(rates[int(np.argmin(loss))])


def fit_paper(oc: OpenRLHFConstants = DEFAULT_OPENRLHF_CONSTANTS) -> dict[str, PhaseFit]:
    """Fit each phase's constant on all rows and on each pair (leave-one-out)."""
    _, rows = paper_rows()
    n = len(rows)
    train_one = _seconds(rows, "train", dataclasses.replace(oc, train_time_factor=1.0))
    slow, fast = 1.0e9, 2.0e9
    at_slow = _seconds(rows, "weight sync", dataclasses.replace(oc, weight_sync_bytes_per_s=slow))
    at_fast = _seconds(rows, "weight sync", dataclasses.replace(oc, weight_sync_bytes_per_s=fast))
    moved = (at_slow - at_fast) / (1.0 / slow - 1.0 / fast)
    fixed = at_slow - moved / slow
    target = {"train": np.array([r.train_s for r in rows]), "weight sync": np.array([r.weight_sync_s for r in rows])}

    def model(phase: str, value: float) -> np.ndarray:
        return train_one * value if phase == "train" else fixed + moved / value

    def fit(phase: str, keep: np.ndarray) -> float:
        return _fit_train(rows, train_one, keep) if phase == "train" else _fit_sync(rows, fixed, moved, keep)

    out = {}
    for phase, name in FITTED.items():
        default = float(getattr(oc, name))
        loo = []
        for i in range(n):
            keep = np.arange(n) != i
            loo.append(float(model(phase, fit(phase, keep))[i] / target[phase][i]))
        out[phase] = PhaseFit(
            phase,
            name,
            fit(phase, np.ones(n, dtype=bool)),
            default,
            tuple(float(x) for x in model(phase, default) / target[phase]),
            tuple(loo),
        )
    return out
