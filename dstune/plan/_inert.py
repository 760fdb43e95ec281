"""Knobs that have no effect under other knobs' values.

DeepSpeed ignores them there, so two candidates that differ only in an inert knob are
the same run. The search keeps only the default value of an inert knob, so its
candidates (and runners-up) are distinct plans.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ._knobs import knob_fields

Columns = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Inert:
    knob: str
    reads: tuple[str, ...]
    when: Callable[[Columns], np.ndarray]
    why: str


def _no_he(c: Columns) -> np.ndarray:
    return ~c["enable_hybrid_engine"].astype(bool)


INERT: dict[str, tuple[Inert, ...]] = {
    "ppo": (
        Inert("release_inference_cache", ("enable_hybrid_engine",), _no_he, "only the Hybrid Engine has the cache"),
        Inert("inference_tp_size", ("enable_hybrid_engine",), _no_he, "only the Hybrid Engine generates with TP"),
        Inert(
            "unpin_actor_parameters",
            ("enable_hybrid_engine", "actor_zero_stage"),
            lambda c: _no_he(c) | (c["actor_zero_stage"] != 3),
            "pinning applies to the HE's ZeRO-3 gather",
        ),
        Inert(
            "tp_gather_partition_size",
            ("enable_hybrid_engine", "inference_tp_size"),
            lambda c: _no_he(c) | (c["inference_tp_size"] <= 1),
            "layers gathered at a time for HE TP only",
        ),
        Inert(
            "offload_reference_model",
            ("actor_zero_stage",),
            lambda c: c["actor_zero_stage"] != 3,
            "the reference model runs at ZeRO-3 only with a ZeRO-3 actor; DeepSpeed offloads params at ZeRO-3 only",
        ),
        Inert(
            "offload_reward_model",
            ("critic_zero_stage",),
            lambda c: c["critic_zero_stage"] != 3,
            "the reward model runs at ZeRO-3 only with a ZeRO-3 critic; DeepSpeed offloads params at ZeRO-3 only",
        ),
    ),
    "sft": (),
    "rm": (),
}


def redundant_rows(step: str, cols: Columns, varied: tuple[str, ...]) -> np.ndarray:
    """Rows that set an inert knob to a value other than its default: duplicates of another row.
    Only `varied` knobs count: a value the user fixed is kept whatever it is."""
    defaults = {f.name: f.default for f in knob_fields(step)}
    n = len(next(iter(cols.values())))
    out = np.zeros(n, dtype=bool)
    for rule in INERT.get(step, ()):
        if rule.knob in varied and rule.knob in cols and all(r in cols for r in rule.reads):
            out |= rule.when(cols) & (cols[rule.knob] != defaults[rule.knob])
    return out
