"""The target stack in the export: requirements.txt pins it, and the launch script checks it before anything loads.

The preflight runs in the launch script's own python (`${PYTHON:-python3}`) and reads versions from package
metadata only (no torch, no DeepSpeed import: a second or two). Any mismatch exits 2 with one line naming
each, before `deepspeed` starts: a wrong transformers otherwise crashes at the first generation, minutes in.
"""

from __future__ import annotations

import json

from ..catalog import Stack

REQUIREMENTS = "requirements.txt"
SKIP_VARIABLE = "DSTUNE_SKIP_PREFLIGHT"

_CHECK = r"""
import json, re, sys
from importlib import metadata
def release(text):
    return tuple(int(p) for p in re.findall(r"\d+", text.split("+")[0].split("rc")[0].split("dev")[0])[:4])
def holds(version, clause):
    op, want = re.match(r"(===|==|!=|>=|<=|~=|>|<)(.*)", clause).groups()
    if op in ("==", "==="):
        return version == want or ("+" not in want and version.split("+")[0] == want)
    if op == "!=":
        return version.split("+")[0] != want
    have, need = release(version), release(want)
    if op == "~=":
        return have >= need and have[: len(need) - 1] == need[: len(need) - 1]
    return {">=": have >= need, "<=": have <= need, ">": have > need, "<": have < need}[op]
def ok(version, spec):
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version
        return Version(version) in SpecifierSet(spec, prereleases=True)
    except ImportError:  # no packaging: transformers, which needs it, is missing too and said so
        return all(holds(version, c.strip()) for c in spec.split(","))
def installed(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
name, pins = sys.argv[1], json.loads(sys.argv[2])
wrong = []
for package, spec in pins.items():
    version = installed(package)
    if version is None:
        wrong.append(f"{package} not installed (pinned {spec})")
    elif not ok(version, spec):
        wrong.append(f"{package} {version} (pinned {spec})")
if wrong:
    print(f"dstune preflight: this environment is not the plan's stack {name}: " + "; ".join(wrong)
          + "; pip install -r requirements.txt (beside this script), or DSTUNE_SKIP_PREFLIGHT=1 to launch anyway",
          file=sys.stderr)
    sys.exit(2)
"""


def requirements_text(stack: Stack) -> str:
    """requirements.txt: the target stack's pins, with where they come from."""
    lines = [
        f"# The stack this plan's figures hold for: {stack.label}",
        f"# {stack.description}" if stack.description else "",
        "# Install with: pip install -r requirements.txt   (the launch script checks these before it starts)",
        *stack.requirement_lines(),
    ]
    return "\n".join(line for line in lines if line) + "\n"


def preflight_lines(stack: Stack) -> list[str]:
    """Bash lines for the launch script: compare installed versions with the pins; exit 2 naming each mismatch."""
    pins = {p.replace("_", "-"): spec for p, spec in stack.requires.items()}
    if not pins:
        return []
    quoted = json.dumps(pins).replace("'", "'\"'\"'")
    name = stack.name.replace("'", "")
    return [
        f"# Preflight: the installed versions must be the plan's stack ({REQUIREMENTS}); {SKIP_VARIABLE}=1 skips it.",
        f'if [ -z "${{{SKIP_VARIABLE}:-}}" ]; then',
        f"  \"${{PYTHON:-python3}}\" - '{name}' '{quoted}' <<'DSTUNE_PREFLIGHT' || exit 2",
        _CHECK.strip(),
        "DSTUNE_PREFLIGHT",
        "fi",
        "",
    ]


def with_preflight(script: str, stack: Stack) -> str:
    """A launch script with the preflight right after its `set -euo pipefail` (a framework's, rendered elsewhere)."""
    marker = "set -euo pipefail\n"
    if marker not in script:
        raise ValueError("launch script has no `set -euo pipefail` line to put the preflight after")
    head, tail = script.split(marker, 1)
    return head + marker + "\n".join(preflight_lines(stack)) + "\n" + tail
