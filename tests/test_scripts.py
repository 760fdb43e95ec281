"""Every script under scripts/ runs in CI: scripts/quick.sh names each one (a benchmark nothing runs rots unseen)."""

from __future__ import annotations

import re
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
RUN_BY_CI_ITSELF = {"setup.sh", "check.sh", "quick.sh"}


def test_quick_sh_runs_every_script() -> None:
    quick = (SCRIPTS / "quick.sh").read_text(encoding="utf-8")
    named = set(re.findall(r"scripts/([\w.-]+\.(?:py|sh))", quick))
    scripts = {p.name for p in SCRIPTS.iterdir() if p.suffix in (".py", ".sh") and not p.name.startswith("_")}
    scripts -= RUN_BY_CI_ITSELF  # _name.py: a module the scripts import, not a script
    assert scripts - named == set(), "scripts with no quick-mode line in scripts/quick.sh"
