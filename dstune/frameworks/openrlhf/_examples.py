"""OpenRLHF's shipped example scripts as baselines: their arguments (data, with source path), what the
supported version's parser refuses in them, and the plan each one is."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from ._plan import LIST_FLAGS, OpenRLHFJob, OpenRLHFPlan, make_plan, parse_value
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
        return plan_from_argv(self.accepted_argv)

    def unmodelled(self) -> tuple[str, ...]:
        return unmodelled_args(self.accepted_argv)

    def label(self) -> str:
        text = f"{self.path} at OpenRLHF v0.11.0 ({self.model} on {self.gpus} GPUs)"
        if self.adapted:
            text += f"; without {' '.join(self.rejected)}, which 0.11.2's parser refuses"
        return text


def plan_from_argv(argv: list[str], job: OpenRLHFJob | None = None) -> OpenRLHFPlan:
    """A plan from `train_ppo_ray` arguments: the modelled flags typed, the rest kept as they are."""
    values: dict[str, Any] = {}
    defaults = openrlhf_spec().defaults
    for i, token in enumerate(argv):
        flag = token[2:]
        if not token.startswith("--") or flag not in defaults:
            continue
        if isinstance(defaults[flag], bool):
            values[flag] = True
        elif flag in LIST_FLAGS:
            names = list(itertools.takewhile(lambda t: not t.startswith("--"), argv[i + 1 :]))
            values[flag] = " ".join(names) or defaults[flag]
        elif i + 1 < len(argv):
            values[flag] = parse_value(flag, argv[i + 1])
    if job is None:
        function = "--reward.remote_url" in argv or "--train.agent_func_path" in argv
        job = OpenRLHFJob(reward="function" if function else "model")
    return make_plan(values, job, unmodelled_args(argv))


def unmodelled_args(argv: list[str]) -> tuple[str, ...]:
    """The arguments whose flag dstune does not model, each with its values."""
    defaults = openrlhf_spec().defaults
    out: list[str] = []
    keep = False
    for token in argv:
        if token.startswith("--"):
            keep = token[2:] not in defaults
        if keep:
            out.append(token)
    return tuple(out)


_DOTLESS = frozenset({"--local_rank", "--use_ms"})


def script_argv(text: str) -> list[str]:
    """The `train_ppo_ray` arguments of a launch script (what follows `-m openrlhf.cli.train_ppo_ray`)."""
    import shlex

    from ...errors import UserInputError

    marker = "openrlhf.cli.train_ppo_ray"
    if marker not in text:
        raise UserInputError(f"the script does not run {marker}")
    tail = text.split(marker, 1)[1].replace("\\\n", " ")
    try:
        tokens = shlex.split(tail, comments=True)
    except ValueError as error:
        raise UserInputError(f"cannot read the script's arguments: {error}") from None
    argv = []
    for token in tokens:
        if token in (";", "&&", "||", "|") or token.startswith(">"):
            break
        argv.append(token)
    old = [t for t in argv if t.startswith("--") and "." not in t and t not in _DOTLESS]
    if old:
        raise UserInputError(
            f"the script uses pre-0.10.2 flag names ({old[0]}); "
            "OpenRLHF 0.11.2 takes dotted ones (e.g. --vllm.num_engines)"
        )
    return argv


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
