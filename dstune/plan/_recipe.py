"""The job a shipped DeepSpeed-Chat launch script runs: every flag that is not a system knob.

A pick changes system knobs only (the plan's fields, model paths, the output folder); the rest of
the shipped script (learning rates, epochs, scheduler, warmup, weight decay, datasets and split,
seed, dropout) is the job and reaches the exported script unchanged. The flags are imported from
DeepSpeedExamples by scripts/import_shipped_recipes.py into dstune/steps/data/recipes.json.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import shlex
from pathlib import Path
from typing import Any

from ._step import step_strategy

RECIPES_FILE = Path(__file__).resolve().parents[1] / "steps" / "data" / "recipes.json"
_PLACES = frozenset(
    {
        "model_name_or_path",
        "actor_model_name_or_path",
        "critic_model_name_or_path",
        "output_dir",
        "deepspeed",
        "num_padding_at_beginning",
    }
)
"""Where the script runs and on what: set by the export from the model, not by the recipe."""
_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def system_flags(step: str) -> frozenset[str]:
    """Flags a plan may set (its knobs) or the export sets (paths, padding): everything but the job."""
    return _PLACES | {f.name for f in dataclasses.fields(step_strategy(step).plan_class)}


def parse_script(text: str) -> dict[str, str]:
    """The `deepspeed main.py` flags of a launch script (bare flags map to ""), expanded as bash would:
    the script's own assignments (quoted ones too: `ACTOR_ZERO_STAGE="--actor_zero_stage 3"` adds two
    words) and empty-argument defaults substituted, a variable the script never assigns empty; one
    assigned only from its arguments (`$2`) stays as written."""
    variables: dict[str, str] = {}
    assigned: set[str] = set()
    joined = re.sub(r"\\\n", " ", text)
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if match := re.fullmatch(r"(?:then\s+)?(\w+)=(\"[^\"]*\"|'[^']*'|\S*)(?:\s*;?\s*fi)?", line):
            name, value = match[1], "".join(shlex.split(match[2]))
            assigned.add(name)
            if not value.startswith("$"):
                variables[name] = value
        if "main.py" in line and line.split()[0] == "deepspeed":
            command = line.split("main.py", 1)[1].split("&>", 1)[0]

    def expand(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name == "OUTPUT":
            return "$OUTPUT"
        return variables.get(name, match[0] if name in assigned else "")

    flags: dict[str, str] = {}
    flag = None
    for token in shlex.split(_VAR.sub(expand, command)):
        if token.startswith("--"):
            flag = token[2:]
            flags[flag] = ""
        elif flag is not None:
            flags[flag] = f"{flags[flag]} {token}".strip()
    return flags


@functools.lru_cache(maxsize=1)
def _recipes() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RECIPES_FILE.read_text(encoding="utf-8"))
    return data


def recipe(step: str, script_path: str) -> dict[str, str]:
    """The job flags of one shipped script (its path under the step's training_scripts/)."""
    key = f"{step_strategy(step).script.folder}/training_scripts/{script_path}"
    scripts: dict[str, dict[str, str]] = _recipes()["scripts"]
    if key not in scripts:
        raise KeyError(f"{key} is not in {RECIPES_FILE.name}; run scripts/import_shipped_recipes.py")
    return dict(scripts[key])
