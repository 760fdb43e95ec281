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
    """The doctor's Stack the table recorded, or None when it has no sidecar (stack unknown)."""
    from ..doctor import Stack

    path = stack_path(table)
    if not path.exists():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
    return Stack(
        versions=raw.get("versions") or {},
        he_kernels=raw.get("he_kernels") or {},
        he_verdicts=raw.get("he_verdicts") or {},
    )
