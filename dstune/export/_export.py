"""Assemble and write the export folder."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ..plan import make_plan
from ._configs import role_configs
from ._files import atomic_write, dump_json, now_iso, trials_table, versions
from ._script import SCRIPT_NAMES, launch_script


@dataclass(frozen=True)
class ExportInfo:
    backend: str
    backend_note: str
    storage: str
    study_name: str
    headroom: float
    gpu_note: str = ""


def check_writable(out: Path) -> None:
    """Create --out if needed and prove a file can be written there; UserInputError otherwise."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".dstune-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise UserInputError(f"--out {out}: not writable ({error.strerror or error})") from None


def _figures(row: Any, kind: str, simulated: bool) -> dict[str, Any] | None:
    if row is None:
        return None
    if kind == "measured":
        return None if simulated or row.measured is None else row.measured.to_json()
    figures = row.measured if simulated else row.predicted
    return figures.to_json() if figures else None


def prediction_errors(rows: list[Any]) -> list[dict[str, Any]]:
    """|log(measured / predicted)| per measured trial, where the prediction was made before the trial ran."""
    out = []
    for row in sorted(rows, key=lambda r: r.number):
        if row.status != "ok" or not row.predicted or not row.measured or row.source == "repeat":
            continue
        entry = {"trial": row.number,
                 "samples_per_s_abs_log_error": abs(math.log(row.measured.samples_per_s / row.predicted.samples_per_s))}
        if row.measured.gpu_peak_bytes and row.predicted.gpu_peak_bytes:
            entry["gpu_peak_abs_log_error"] = abs(math.log(row.measured.gpu_peak_bytes / row.predicted.gpu_peak_bytes))
        out.append(entry)
    return out


def plan_payload(result: Any, info: ExportInfo, files: list[str]) -> dict[str, Any]:
    req = result.request
    setup = req.setup
    simulated = info.backend == "simulate"
    pick, base = result.pick, result.baseline_row
    speedup = None
    if pick and base and base.status == "ok" and base.measured:
        speedup = pick.measured.samples_per_s / base.measured.samples_per_s
    return {
        "step": setup.step, "model": setup.model.name,
        "critic_model": setup.critic_model.name if setup.critic_model else None,
        "gpus": setup.cluster.world_size, "nodes": setup.cluster.nodes, "gpu_type": setup.cluster.gpu.name,
        "gpu_note": info.gpu_note, "backend": info.backend, "backend_note": info.backend_note,
        "study": {"name": info.study_name, "storage": info.storage, "trials": len(result.rows),
                  "new_trials": result.new_trials, "space": req.space.path, "candidates": len(result.grid),
                  "dropped": result.grid.dropped, "sampler": req.sampler, "seed": req.seed},
        "trial": pick.number if pick else None,
        "plan": pick.values if pick else None,
        "predicted": _figures(pick, "predicted", simulated),
        "measured": _figures(pick, "measured", simulated),
        "baseline": {
            "script": result.baseline.script, "adjustments": list(result.baseline.adjustments),
            "trial": base.number if base else None, "status": base.status if base else None,
            "reason": base.reason if base else None,
            "plan": base.values if base else None,
            "predicted": _figures(base, "predicted", simulated), "measured": _figures(base, "measured", simulated),
        },
        "speedup_over_baseline": speedup,
        "headroom": info.headroom, "memory_cap_bytes": int(req.cap_bytes),
        "gpu_capacity_bytes": int(setup.cluster.gpu.memory_bytes),
        "runners_up": [{"trial": r.number, "plan": r.values, "samples_per_s": r.measured.samples_per_s,
                        "gpu_peak_bytes": r.measured.gpu_peak_bytes or (r.predicted and r.predicted.gpu_peak_bytes)}
                       for r in result.ranked[1:4]],
        "calibration": {
            "prediction_errors": prediction_errors(result.rows),
            "fits": [vars(h) for h in result.history],
        },
        "notes": result.notes, "files": files, "versions": versions(), "created": now_iso(),
    }


def write_export(result: Any, out: Path, info: ExportInfo) -> list[str]:
    """Write every file of the export into `out`; returns the file names written."""
    req = result.request
    setup = req.setup
    texts: dict[str, str] = {}
    pick = result.pick
    if pick is not None:
        plan = make_plan(setup.step, pick.values)
        for name, config in role_configs(plan, setup.cluster.world_size).items():
            texts[name] = dump_json(config)
        header = (f"{setup.model.name} {setup.step} on {setup.cluster.world_size} x {setup.cluster.gpu.name}, "
                  f"study {info.study_name} trial {pick.number} ({info.backend}).")
        texts[SCRIPT_NAMES[setup.step]] = launch_script(plan, model=setup.model, critic_model=setup.critic_model,
                                                        cluster=setup.cluster, header=header)
    meta = {"step": setup.step, "model": setup.model.name,
            "critic_model": setup.critic_model.name if setup.critic_model else "",
            "gpus": setup.cluster.world_size, "gpu_type": setup.cluster.gpu.name, "backend": info.backend,
            "device": req.backend.device}
    texts["trials.csv"] = trials_table(result.rows, setup.step, meta)
    files = sorted(texts) + ["plan.json"]
    texts["plan.json"] = dump_json(plan_payload(result, info, files))
    check_writable(out)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        for name, text in texts.items():
            atomic_write(staging / name, text)
        for name in texts:
            os.replace(staging / name, out / name)
    except OSError as error:
        raise UserInputError(f"--out {out}: cannot write the export ({error.strerror or error})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files
