"""The export's file helpers come from the study record (dstune.record), which owns the files' schema."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..record import atomic_write, dump_json, now_iso, trials_csv_text, versions


def trials_table(rows: Sequence[Any], step: str, meta: Mapping[str, Any]) -> str:
    """trials.csv text (see dstune.record.trials_csv_text)."""
    return trials_csv_text(rows, step, meta)


__all__ = ["atomic_write", "dump_json", "now_iso", "trials_table", "versions"]
