"""OpenRLHF's shipped example scripts as baselines: their arguments (data, with source path), what the
supported version's parser refuses in them, and the plan each one is."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from ._plan import OpenRLHFJob, OpenRLHFPlan, make_plan, parse_value
from ._spec import openrlhf_spec


@dataclass(frozen=True)
class Example:
    name: str
    path: str
    model: str
    gpus: int
    model_note: str
    argv: tuple[str, ...]
    rejected: tuple[str, ...]
    """Tokens the supported parser refuses; `accepted_argv` drops them."""
    source: str

    @property
    def accepted_argv(self) -> list[str]:
        return [t for t in self.argv if t not in self.rejected]

    @property
    def adapted(self) -> bool:
        return bool(self.rejected)

    def plan(self) -> OpenRLHFPlan:
        values: dict[str, Any] = {}
        defaults = openrlhf_spec().defaults
        argv = self.accepted_argv
        for i, token in enumerate(argv):
            flag = token[2:]
            if not token.startswith("--") or flag not in defaults:
                continue
            if isinstance(defaults[flag], bool):
                values[flag] = True
            else:
                values[flag] = parse_value(flag, argv[i + 1])
        function = "--reward.remote_url" in argv or "--train.agent_func_path" in argv
        return make_plan(values, OpenRLHFJob(reward="function" if function else "model"), self.unmodelled())

    def unmodelled(self) -> tuple[str, ...]:
        """The accepted arguments whose flag dstune does not model, each with its values."""
        defaults = openrlhf_spec().defaults
        out: list[str] = []
        keep = False
        for token in self.accepted_argv:
            if token.startswith("--"):
                keep = token[2:] not in defaults
            if keep:
                out.append(token)
        return tuple(out)

    def label(self) -> str:
        text = f"{self.path} at OpenRLHF main 3c3be623 ({self.model} on {self.gpus} GPUs)"
        if self.adapted:
            text += f"; without {' '.join(self.rejected)}, which 0.11.2's parser refuses"
        return text


@lru_cache(maxsize=1)
def examples() -> tuple[Example, ...]:
    raw = json.loads(resources.files(__package__).joinpath("data/examples.json").read_text(encoding="utf-8"))
    source = raw["source"]
    return tuple(
        Example(
            name=e["name"],
            path=e["path"],
            model=e["model"],
            gpus=int(e["gpus"]),
            model_note=e["model_note"],
            argv=tuple(e["argv"]),
            rejected=tuple(e["rejected_by_0.11.2"]),
            source=source,
        )
        for e in raw["examples"]
    )


def baseline_for(model: str, gpus: int, estimator: str, reward: str | None = None) -> Example | None:
    """The shipped example that trains this job: same model, GPU count, estimator (and reward source when
    given); else the same but another model; else None. Among equals, one the supported parser takes as is."""
    same = [
        e
        for e in examples()
        if e.plan().estimator == estimator and e.gpus == gpus and reward in (None, e.plan().job.reward)
    ]
    exact = [e for e in same if e.model == model]
    pool = exact or same
    return min(pool, key=lambda e: (e.adapted, e.name)) if pool else None
