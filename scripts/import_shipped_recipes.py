"""Import DeepSpeed-Chat's shipped launch scripts: their job flags (dstune/steps/data/recipes.json) and
the scripts themselves as test fixtures (tests/export/shipped/), from a DeepSpeedExamples git directory.

    python scripts/import_shipped_recipes.py /path/to/DeepSpeedExamples/.git
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from dstune.plan import step_strategy
from dstune.plan._recipe import RECIPES_FILE, parse_script, system_flags

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "export" / "shipped"
STEPS = ("sft", "rm", "dpo", "ppo")


def main(git_dir: str) -> None:
    import dstune.steps  # noqa: F401  (registers the steps)

    def git(*args: str) -> str:
        return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True, text=True).stdout

    commit = git("rev-parse", "HEAD").strip()
    recipes: dict[str, dict[str, str]] = {}
    for step in STEPS:
        strategy = step_strategy(step)
        folder = strategy.script.folder
        paths = {s.path for layout in ("gpu", "node", "multi", "other") for s in _scripts(strategy, layout)}
        for path in sorted(paths):
            key = f"{folder}/training_scripts/{path}"
            text = git("show", f"HEAD:applications/DeepSpeed-Chat/training/{key}")
            (FIXTURES / key).parent.mkdir(parents=True, exist_ok=True)
            (FIXTURES / key).write_text(text, encoding="utf-8")
            flags = parse_script(text)
            recipes[key] = {k: v for k, v in flags.items() if k not in system_flags(step)}
    RECIPES_FILE.write_text(
        json.dumps({"source": f"deepspeedai/DeepSpeedExamples@{commit}", "scripts": recipes}, indent=1) + "\n",
        encoding="utf-8",
    )
    (FIXTURES / "SOURCE").write_text(
        f"Verbatim copies of deepspeedai/DeepSpeedExamples@{commit} applications/DeepSpeed-Chat/training "
        "launch scripts (Apache-2.0), written by scripts/import_shipped_recipes.py.\n",
        encoding="utf-8",
    )


def _scripts(strategy: Any, layout: str) -> Any:
    return strategy.baseline_scripts(
        "opt" if layout != "other" else "llama", {"gpu": 1, "node": 8, "multi": 64}.get(layout, 8)
    )


if __name__ == "__main__":
    main(sys.argv[1])
