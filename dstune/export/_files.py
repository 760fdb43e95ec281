"""plan.json and trials.csv: what the report reads, with stable names."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..plan import knob_fields

TRIALS_COLUMNS_HEAD = ("number", "status", "source")
FIGURES = ("samples_per_s", "tokens_per_s", "gpu_peak_bytes", "step_s", "mfu")


def versions() -> dict[str, str | None]:
    """Package versions from metadata (no heavy imports)."""
    from importlib import metadata

    out = {}
    for name in ("dstune", "deepspeed", "torch", "transformers", "optuna", "numpy", "scipy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def trials_table(rows: Sequence[Any], step: str, meta: Mapping[str, Any]) -> str:
    """CSV text, one row per trial: status, source, every knob, predicted_* and measured_* figures, reason.
    The same columns make a replay table (--backend replay --table trials.csv). Simulated studies leave
    measured_* empty: their figures are predictions."""
    knobs = [f.name for f in knob_fields(step)]
    phases: list[str] = []
    for row in rows:
        for figures in (row.predicted, row.measured):
            for name in (figures.phases if figures else {}):
                if name not in phases:
                    phases.append(name)
    columns = list(TRIALS_COLUMNS_HEAD) + knobs
    for prefix in ("predicted", "measured"):
        columns += [f"{prefix}_{f}" for f in FIGURES] + [f"{prefix}_time_{p}" for p in phases]
    columns += ["p_fit", "reason", "step", "model", "critic_model", "gpus", "gpu_type", "backend", "device"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        record: dict[str, Any] = {"number": row.number, "status": row.status, "source": row.source,
                                  **{k: row.values.get(k, "") for k in knobs}, "p_fit": row.p_fit,
                                  "reason": row.reason, **meta, "device": row.details.get("device", meta.get("device"))}
        measured = None if meta.get("backend") == "simulate" else row.measured
        for prefix, figures in (("predicted", row.predicted), ("measured", measured)):
            if figures is not None:
                record.update(figures.flat(prefix))
        writer.writerow({k: ("" if v is None else v) for k, v in record.items()})
    return buffer.getvalue()


def atomic_write(path: Path, text: str) -> None:
    """Write beside the target, then os.replace: readers see the old file or the new one, never half."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temp, 0o755 if path.suffix == ".sh" else 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def dump_json(payload: Any) -> str:
    return json.dumps(payload, indent=2, default=str) + "\n"
