"""The stack a replay table was measured on, kept beside it as `<table>.stack.json`.

A measured row ran on its own stack: replaying it must judge known issues by that stack's verdicts
(e.g. Hybrid Engine rows recorded where HE ran), never by the host's."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def stack_path(table: str | Path) -> Path:
    table = Path(table)
    return table.with_name(table.stem + ".stack.json")


def describe_host(stack: Any, device: str) -> dict[str, Any]:
    """What a recording writes: versions, HE verdicts, date and machine of the run."""
    from ..record import now_iso

    return {
        "recorded": now_iso(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "device": device,
        },
        "versions": dict(stack.versions),
        "he_kernels": dict(stack.he_kernels),
        "he_verdicts": dict(stack.he_verdicts),
    }


def write_table_stack(table: str | Path, payload: Mapping[str, Any]) -> None:
    from ..record import atomic_write, dump_json

    atomic_write(stack_path(table), dump_json(payload))


def read_table_stack(table: str | Path) -> Any:
    """The stack the table recorded (its exact versions and HE verdicts), or None when it has no sidecar."""
    from ..catalog import STACK_PACKAGES, Stack
    from ..catalog._stacks import canonical

    path = stack_path(table)
    if not path.exists():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
    versions = {canonical(k): v for k, v in (raw.get("versions") or {}).items() if v}
    return Stack(
        name=f"recorded with {Path(table).name}",
        requires={k: f"=={v}" for k, v in versions.items() if k in STACK_PACKAGES},
        he_verdicts=raw.get("he_verdicts") or {},
        verdicts_from=f"recorded with the table ({path.name})",
        description=f"the stack {Path(table).name}'s rows ran on ({raw.get('recorded', 'date unknown')})",
    )
