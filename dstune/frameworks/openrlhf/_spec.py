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


@lru_cache(maxsize=1)
def published_sources() -> tuple[PublishedSource, ...]:
    """Published OpenRLHF throughput rows (data/published.yaml) and whether each may back a constant."""
    raw = yaml.safe_load(resources.files(__package__).joinpath("data/published.yaml").read_text(encoding="utf-8"))
    return tuple(
        PublishedSource(s["source"], s["metric"], len(s["rows"]), bool(s["in_fit"]), s.get("why_not", "")) for s in raw
    )
