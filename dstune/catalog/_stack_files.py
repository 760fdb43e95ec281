"""A stack read from a file the cluster wrote: `pip freeze` output, a requirements file, or `dstune doctor --json`.

A doctor's JSON is used as it is: its versions and its probed HE verdicts. A freeze or requirements file
carries versions only; its verdicts are those recorded for a named stack with the same deepspeed and
transformers, else unknown (said so, with how to settle it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ._stacks import STACK_PACKAGES, Stack, canonical, recorded_verdicts

_REQUIREMENT = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*((?:[=<>!~]=?|===)[^;#\s]+(?:\s*,\s*[=<>!~]=?[^;#\s,]+)*)?"
)


def stack_from_file(path: Path) -> Stack:
    """The stack a cluster's file describes; UserInputError (one line) when it cannot be read or names none."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserInputError(f"--stack {path}: cannot read it ({type(error).__name__}: {error})") from None
    if text.lstrip().startswith("{"):
        return _from_doctor_json(path, text)
    requires = _requirements(text)
    if not any(p in requires for p in ("deepspeed", "transformers")):
        raise UserInputError(
            f"--stack {path}: names neither deepspeed nor transformers; pass `pip freeze` output, a requirements "
            "file or a saved `dstune doctor --json`"
        )
    verdicts, verdicts_from = recorded_verdicts(requires)
    return Stack(
        name=str(path),
        requires=requires,
        he_verdicts=verdicts,
        description=f"read from {path.name}",
        verdicts_from=verdicts_from or "unknown: the file has versions only",
    )


def _requirements(text: str) -> dict[str, str]:
    """Distribution -> specifier for the stack's packages; options, URLs and editable installs are skipped."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = _REQUIREMENT.match(line)
        if match is None:
            continue
        name, spec = canonical(match.group(1)), (match.group(2) or "").replace(" ", "")
        if name in STACK_PACKAGES and spec:
            found[name] = spec
    return found


def _from_doctor_json(path: Path, text: str) -> Stack:
    try:
        data: Any = json.loads(text)
    except ValueError as error:
        raise UserInputError(f"--stack {path}: not valid JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("versions"), dict):
        raise UserInputError(f"--stack {path}: a JSON stack must be `dstune doctor --json` output (no 'versions')")
    versions = {canonical(k): v for k, v in data["versions"].items() if isinstance(v, str)}
    requires = {p: f"=={versions[p]}" for p in STACK_PACKAGES if p in versions}
    if not any(p in requires for p in ("deepspeed", "transformers")):
        raise UserInputError(f"--stack {path}: its doctor report names neither deepspeed nor transformers")
    he = data.get("hybrid_engine") or {}
    verdicts = {str(f): (s or {}).get("verdict") for f, s in he.items() if isinstance(s, dict)}
    return Stack(
        name=str(path),
        requires=requires,
        he_verdicts=verdicts,
        torch_cuda=data["versions"].get("torch_cuda"),
        description=f"`dstune doctor --json` saved as {path.name}",
        verdicts_from=f"probed by dstune doctor where {path.name} was written",
    )
