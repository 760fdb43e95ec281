"""The export's file helpers come from the study record (dstune.record), which owns the files' schema;
and the guard that keeps one study's folder from being overwritten by another's."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ..record import atomic_write, dump_json, now_iso, trials_csv_text, versions

DEFAULT_FRAMEWORK = "deepspeed-chat"
"""What a plan.json without a `framework` key was written for."""


def trials_table(rows: Sequence[Any], step: str, meta: Mapping[str, Any]) -> str:
    """trials.csv text (see dstune.record.trials_csv_text)."""
    return trials_csv_text(rows, step, meta)


def _describe(fields: Mapping[str, Any]) -> str:
    shown = [str(fields.get(k)) for k in ("framework", "model", "step", "estimator") if fields.get(k)]
    return " ".join(shown) + f" on {fields.get('gpus')} x {fields.get('gpu_type')}"


def check_same_study(out: Path, study: Mapping[str, Any]) -> None:
    """UserInputError when `out` holds the plan.json of another study (other framework, model, step or
    cluster): writing there would silently replace its configs, launch script and report. The same
    study (a rerun that continues it) may write there."""
    path = Path(out) / "plan.json"
    if not path.is_file():
        return
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        raise UserInputError(f"--out {out}: holds a plan.json dstune cannot read; choose another --out or remove it")
    found = {**{k: meta.get(k) for k in study}, "framework": meta.get("framework") or DEFAULT_FRAMEWORK}
    if any(found.get(k) != v for k, v in study.items()):
        raise UserInputError(
            f"--out {out} holds another study ({_describe(found)}); this search is {_describe(study)}: "
            "choose another --out, or remove that folder first"
        )


__all__ = ["DEFAULT_FRAMEWORK", "atomic_write", "check_same_study", "dump_json", "now_iso", "trials_table", "versions"]
