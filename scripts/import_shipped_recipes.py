"""Import DeepSpeed-Chat's shipped launch scripts: their job flags (dstune/steps/data/recipes.json) and
the scripts themselves as test fixtures (tests/export/shipped/), from a DeepSpeedExamples git directory.

    python scripts/import_shipped_recipes.py /path/to/DeepSpeedExamples/.git
    python scripts/import_shipped_recipes.py --check   # re-parse the committed copies against recipes.json
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
    def git(*args: str) -> str:
        return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True, text=True).stdout

    commit = git("rev-parse", "HEAD").strip()
    texts = {key: git("show", f"HEAD:applications/DeepSpeed-Chat/training/{key}") for key in _script_keys()}
    for key, text in texts.items():
        (FIXTURES / key).parent.mkdir(parents=True, exist_ok=True)
        (FIXTURES / key).write_text(text, encoding="utf-8")
    RECIPES_FILE.write_text(
        json.dumps({"source": f"deepspeedai/DeepSpeedExamples@{commit}", "scripts": _recipes(texts)}, indent=1) + "\n",
        encoding="utf-8",
    )
    (FIXTURES / "SOURCE").write_text(
        f"Verbatim copies of deepspeedai/DeepSpeedExamples@{commit} applications/DeepSpeed-Chat/training "
        "launch scripts (Apache-2.0), written by scripts/import_shipped_recipes.py.\n",
        encoding="utf-8",
    )


def check() -> int:
    """Re-parse the committed script copies and compare with recipes.json: the parser and the data still agree."""
    texts = {key: (FIXTURES / key).read_text(encoding="utf-8") for key in _script_keys()}
    shipped = json.loads(RECIPES_FILE.read_text(encoding="utf-8"))["scripts"]
    differ = sorted(key for key, flags in _recipes(texts).items() if shipped.get(key) != flags)
    print(f"scripts: {len(texts)}")
    print(f"differ_from_recipes_json: {len(differ)}{(' (' + ', '.join(differ) + ')') if differ else ''}")
    return 1 if differ else 0


def _script_keys() -> list[str]:
    import dstune.steps  # noqa: F401  (registers the steps)

    keys = []
    for step in STEPS:
        strategy = step_strategy(step)
        paths = {s.path for layout in ("gpu", "node", "multi", "other") for s in _scripts(strategy, layout)}
        keys += [f"{strategy.script.folder}/training_scripts/{path}" for path in sorted(paths)]
    return keys


def _recipes(texts: dict[str, str]) -> dict[str, dict[str, str]]:
    recipes = {}
    for key, text in texts.items():
        step = next(s for s in STEPS if key.startswith(step_strategy(s).script.folder + "/"))
        recipes[key] = {k: v for k, v in parse_script(text).items() if k not in system_flags(step)}
    return recipes


def _scripts(strategy: Any, layout: str) -> Any:
    return strategy.baseline_scripts(
        "opt" if layout != "other" else "llama", {"gpu": 1, "node": 8, "multi": 64}.get(layout, 8)
    )


if __name__ == "__main__":
    if sys.argv[1:] in (["--check"], ["--quick"]):
        sys.exit(check())
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: import_shipped_recipes.py DEEPSPEEDEXAMPLES_GIT_DIR | --check")
    main(sys.argv[1])
