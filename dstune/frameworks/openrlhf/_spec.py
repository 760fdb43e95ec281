"""OpenRLHF's supported versions, pinned stack, algorithms and modelled flags, loaded from data."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True)
class Algorithm:
    name: str
    estimator: str
    group: bool
    """A per-prompt-group baseline: needs n_samples_per_prompt > 1 (the parser's assert)."""


@dataclass(frozen=True)
class OpenRLHFSpec:
    supported_versions: tuple[str, ...]
    pins: dict[str, str]
    entrypoint: str
    algorithms: dict[str, Algorithm]
    defaults: dict[str, Any]
    """Dotted flag -> the parser's default."""
    job_knobs: frozenset[str]
    system_knobs: frozenset[str]

    def algorithm(self, name: str) -> Algorithm:
        from ...errors import UserInputError

        key = name.lower()
        if key in self.algorithms:
            return self.algorithms[key]
        for algo in self.algorithms.values():
            if algo.estimator == key:
                return algo
        raise UserInputError(f"unknown algorithm {name!r} for OpenRLHF; choose one of {', '.join(self.algorithms)}")

    def estimator_group(self, estimator: str) -> bool:
        return any(a.group for a in self.algorithms.values() if a.estimator == estimator)


@lru_cache(maxsize=1)
def openrlhf_spec() -> OpenRLHFSpec:
    text = resources.files(__package__).joinpath("data/openrlhf.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    knobs = raw["knobs"]
    return OpenRLHFSpec(
        supported_versions=tuple(raw["supported_versions"]),
        pins={k: str(v) for k, v in raw["pins"].items()},
        entrypoint=raw["entrypoint"],
        algorithms={n: Algorithm(n, a["estimator"], bool(a["group"])) for n, a in raw["algorithms"].items()},
        defaults={flag: value[0] for flag, value in knobs.items()},
        job_knobs=frozenset(f for f, v in knobs.items() if v[1] == "job"),
        system_knobs=frozenset(f for f, v in knobs.items() if v[1] == "system"),
    )


@dataclass(frozen=True)
class PublishedSource:
    source: str
    metric: str
    rows: int
    in_fit: bool
    why_not: str
    fits: tuple[str, ...] = ()
    """Phases whose constants the rows back (empty: none)."""
    read: str = ""
    """How the figures were read (re-read from the source, or quoted second-hand)."""
    caveats: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class PaperRow:
    """One run of the OpenRLHF paper (Table 3's placement, Table 5's seconds per phase)."""

    model: str
    gpus: int
    actor: int
    critic: int
    ref: int
    reward: int
    vllm_engines: int
    vllm_tp: int
    zero_stage: int
    adam_offload: bool
    frozen_offload: bool
    """--ref_offload / --reward_offload (the paper: "Adam offload on every model")."""
    micro_train: int
    micro_rollout: int
    generate_s: float
    weight_sync_s: float
    experience_s: float
    train_s: float


def _published_raw() -> list[dict[str, Any]]:
    raw = yaml.safe_load(resources.files(__package__).joinpath("data/published.yaml").read_text(encoding="utf-8"))
    return list(raw)


@lru_cache(maxsize=1)
def published_sources() -> tuple[PublishedSource, ...]:
    """Published OpenRLHF rows (data/published.yaml) and whether each may back a constant."""
    return tuple(
        PublishedSource(
            s["source"],
            s["metric"],
            len(s["rows"]),
            bool(s["in_fit"]),
            s.get("why_not", ""),
            tuple(s.get("fits", ())),
            s.get("read", ""),
            tuple(s.get("caveats", ())),
        )
        for s in _published_raw()
    )


@lru_cache(maxsize=1)
def paper_rows() -> tuple[PublishedSource, tuple[PaperRow, ...]]:
    """The source that backs constants per phase, and its rows."""
    for s, raw in zip(published_sources(), _published_raw(), strict=True):
        if s.fits:
            return s, tuple(PaperRow(**r) for r in raw["rows"])
    raise LookupError("data/published.yaml has no per-phase rows")
