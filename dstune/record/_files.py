"""trials.csv and plan.json: the study's files, with a schema version, written atomically.

trials.csv has one row per trial: schema_version, number, status, source, job, every knob,
predicted_* and measured_* figures (measured_* only for trials that really ran), p_fit,
reason and the setup. The same file is a replay table (`--backend replay --table`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ..plan import knob_fields
from ..plan._parse import coerce_knob
from ._figures import Basis, Figures
from ._status import Status
from ._trial import TrialRow

SCHEMA_VERSION = 2
"""2: every figure set has a basis; simulated studies have no measured_* figures; intervals and jobs."""
FIGURES = ("samples_per_s", "tokens_per_s", "gpu_peak_bytes", "step_s", "mfu")
SETUP_COLUMNS = ("step", "model", "critic_model", "gpus", "gpu_type", "backend", "device")


def versions() -> dict[str, str | None]:
    """Package versions from metadata (no heavy imports)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in ("dstune", "deepspeed", "torch", "transformers", "optuna", "numpy", "scipy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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


def trials_csv_text(rows: Sequence[TrialRow], step: str, meta: Mapping[str, Any]) -> str:
    """CSV text of a study's trials; `meta` fills the setup columns (step, model, ..., device)."""
    knobs = [f.name for f in knob_fields(step)]
    phases: list[str] = []
    for row in rows:
        for figures in (row.predicted, row.measured):
            for name in figures.phases if figures else {}:
                if name not in phases:
                    phases.append(name)
    columns = ["schema_version", "number", "status", "source", "job", *knobs]
    for prefix in ("predicted", "measured"):
        columns += [f"{prefix}_{f}" for f in FIGURES] + [f"{prefix}_samples_per_s_lo", f"{prefix}_samples_per_s_hi"]
        columns += [f"{prefix}_time_{p}" for p in phases]
    columns += ["p_fit", "reason", *SETUP_COLUMNS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        record: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "number": row.number,
            "status": row.status.value,
            "source": row.source,
            "job": row.job,
            **{k: row.values.get(k, "") for k in knobs},
            "p_fit": row.p_fit,
            "reason": row.reason,
            **meta,
            "device": row.details.get("device") or meta.get("device"),
        }
        for figures in (row.predicted, row.measured):
            if figures is not None:
                record.update(figures.flat())
        writer.writerow({k: ("" if v is None else v) for k, v in record.items()})
    return buffer.getvalue()


@dataclass(frozen=True)
class StoredTrial:
    """A trials.csv row: the trial and the setup columns it was recorded with."""

    row: TrialRow
    setup: dict[str, str]


def _number(text: str | None) -> float | None:
    if text is None or text.strip() in ("", "nan", "None"):
        return None
    return float(text)


def _figures(record: Mapping[str, str], basis: Basis) -> Figures | None:
    p = basis.value
    sps = _number(record.get(f"{p}_samples_per_s"))
    if sps is None:
        return None
    lo, hi = _number(record.get(f"{p}_samples_per_s_lo")), _number(record.get(f"{p}_samples_per_s_hi"))
    phases = {
        k[len(f"{p}_time_") :]: float(v)
        for k, v in record.items()
        if k.startswith(f"{p}_time_") and _number(v) is not None
    }
    return Figures(
        basis=basis,
        samples_per_s=sps,
        tokens_per_s=_number(record.get(f"{p}_tokens_per_s")) or 0.0,
        gpu_peak_bytes=_number(record.get(f"{p}_gpu_peak_bytes")),
        step_s=_number(record.get(f"{p}_step_s")) or 0.0,
        phases=phases,
        mfu=_number(record.get(f"{p}_mfu")),
        samples_per_s_interval=(lo, hi) if lo is not None and hi is not None else None,
    )


def _version_text(value: Any) -> str:
    try:
        return str(int(float(str(value).strip())))
    except ValueError:
        return ""


def check_trials_schema(columns: Sequence[str], records: Sequence[Mapping[str, str]], where: str) -> None:
    """UserInputError unless the file is of this schema (older files have no schema_version column)."""
    if "schema_version" not in columns:
        raise UserInputError(
            f"{where}: written by an older dstune (no schema_version; this one reads schema "
            f"{SCHEMA_VERSION}); rerun the search to rewrite it"
        )
    found = {_version_text(r.get("schema_version")) for r in records} - {""}
    if found and found != {str(SCHEMA_VERSION)}:
        raise UserInputError(f"{where}: schema_version {', '.join(sorted(found))}; this dstune reads {SCHEMA_VERSION}")


def read_trials_csv(path: str | Path, step: str) -> list[StoredTrial]:
    """Every row of `step` in a trials.csv; knobs missing from the file take DeepSpeed-Chat defaults."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            records = list(reader)
            columns = list(reader.fieldnames or [])
    except FileNotFoundError:
        raise UserInputError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UserInputError(f"{path}: cannot read: {error}") from None
    check_trials_schema(columns, records, str(path))
    fields = {f.name: f for f in knob_fields(step)}
    out = []
    for line, record in enumerate(records, start=2):
        if record.get("step") and record["step"] != step:
            continue
        try:
            status = Status((record.get("status") or "").strip().lower())
            number = int(record.get("number") or line - 2)
            values = {
                name: f.default if record.get(name) in (None, "") else coerce_knob(f, record[name])
                for name, f in fields.items()
            }
        except (UserInputError, ValueError) as error:
            raise UserInputError(f"{path}: line {line}: {error}") from None
        measured = _figures(record, Basis.MEASURED)
        if (
            status == Status.OK
            and record.get("backend") != "simulate"
            and measured is None
            and _figures(record, Basis.PREDICTED) is None
        ):
            raise UserInputError(f"{path}: line {line}: status ok without figures")
        row = TrialRow(
            number=number,
            status=status,
            source=record.get("source") or "sampler",
            values=values,
            predicted=_figures(record, Basis.PREDICTED),
            measured=measured,
            p_fit=_number(record.get("p_fit")),
            reason=record.get("reason") or "",
            details={"device": record.get("device") or ""},
            job=record.get("job") or "",
        )
        out.append(StoredTrial(row=row, setup={k: record.get(k) or "" for k in SETUP_COLUMNS}))
    return out


def check_plan_schema(meta: Mapping[str, Any], where: str) -> None:
    version = meta.get("schema_version")
    if version is None:
        raise UserInputError(
            f"{where}: written by an older dstune (no schema_version; this one reads schema "
            f"{SCHEMA_VERSION}); rerun the search to rewrite it"
        )
    if version != SCHEMA_VERSION:
        raise UserInputError(f"{where}: schema_version {version}; this dstune reads {SCHEMA_VERSION}")


def read_plan_json(path: Path) -> dict[str, Any]:
    """plan.json as a dict, checked: a JSON object of this schema."""
    if not path.is_file():
        raise UserInputError(f"{path}: not found (is this a directory written by 'dstune search'?)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserInputError(f"{path}: not valid JSON ({str(error).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise UserInputError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    check_plan_schema(meta, str(path))
    return meta
