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
from ..plan import make_plan, plan_to_dict, step_strategy
from ..record import Status
from ._configs import role_configs
from ._files import atomic_write, dump_json, now_iso, trials_table, versions
from ._pins import REQUIREMENTS, preflight_lines, requirements_text
from ._script import baseline_warnings, launch_script


@dataclass(frozen=True)
class ExportInfo:
    backend: str
    backend_note: str
    storage: str
    study_name: str
    headroom: float
    gpu_note: str = ""
    hardware: str = ""
    """What trials ran on: a catalog GPU name, or "cpu" for DeepSpeed's CPU accelerator."""
    hardware_label: str = ""


def check_writable(out: Path) -> None:
    """Create --out if needed and prove a file can be written there; UserInputError otherwise."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".dstune-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise UserInputError(f"--out {out}: not writable ({error.strerror or error})") from None


def prediction_errors(rows: list[Any]) -> list[dict[str, Any]]:
    """|log(measured / predicted)| per measured trial, where the prediction was made before the trial ran."""
    out = []
    for row in sorted(rows, key=lambda r: r.number):
        if row.status != Status.OK or not row.predicted or not row.measured or row.source in ("repeat", "confirm"):
            continue
        entry = {
            "trial": row.number,
            "samples_per_s_abs_log_error": abs(math.log(row.measured.samples_per_s / row.predicted.samples_per_s)),
        }
        if row.measured.gpu_peak_bytes and row.predicted.gpu_peak_bytes:
            entry["gpu_peak_abs_log_error"] = abs(math.log(row.measured.gpu_peak_bytes / row.predicted.gpu_peak_bytes))
        out.append(entry)
    return out


def _figures(row: Any) -> dict[str, Any]:
    """predicted and measured figure sets of a trial (measured null where it did not run)."""
    return {
        "predicted": row.predicted.to_json() if row and row.predicted else None,
        "measured": row.measured.to_json() if row and row.measured else None,
    }


def _trial(row: Any, reference: dict[str, Any] | None = None) -> dict[str, Any]:
    from ..search import changes

    out = {"trial": row.number, "status": row.status.value, "job": row.job, "plan": row.values, **_figures(row)}
    if reference is not None:
        out["changes"] = {k: row.values[k] for k in changes(row.values, reference)}
    return out


def _job_pick(alt: Any) -> dict[str, Any]:
    pick = alt.pick
    return {
        "job_class": alt.job_class,
        "job": alt.job.label(),
        "job_values": {**alt.job.values, **alt.job.batches},
        "pick": _trial(pick),
        "baseline_of_this_job": _trial(alt.baseline) if alt.baseline else None,
        "speedup_over_baseline_of_this_job": alt.speedup.to_json() if alt.speedup else None,
        "runners_up": [_trial(r, pick.values) for r in alt.runners_up[:3]],
    }


def plan_payload(result: Any, info: ExportInfo, files: list[str]) -> dict[str, Any]:
    from ..record import SCHEMA_VERSION
    from ..search._space import shown_path

    req = result.request
    setup = req.setup
    head = result.picks.headline
    pick, base = head.pick, head.baseline
    return {
        "schema_version": SCHEMA_VERSION,
        "step": setup.step,
        "model": setup.model.name,
        "critic_model": setup.critic_model.name if setup.critic_model else None,
        "gpus": setup.cluster.world_size,
        "nodes": setup.cluster.nodes,
        "gpu_type": info.hardware or setup.cluster.gpu.name,
        "hardware": info.hardware_label,
        "cost_model_gpu_type": setup.cluster.gpu.name,
        "gpu_note": info.gpu_note,
        "backend": info.backend,
        "backend_note": info.backend_note,
        "study": {
            "name": info.study_name,
            "storage": info.storage,
            "trials": len(result.rows),
            "new_trials": result.new_trials,
            "space": shown_path(req.space.path),
            "candidates": len(result.grid),
            "dropped": result.grid.dropped,
            "sampler": req.sampler if info.backend != "simulate" else "exact",
            "seed": req.seed,
            "explored": list(result.space.explored) if result.space else [],
        },
        "job": {"label": head.job.label(), **head.job.values, **head.job.batches},
        "trial": pick.number if pick else None,
        "plan": pick.values if pick else None,
        **_figures(pick),
        "baseline": {
            "script": result.baseline.script,
            "adjustments": list(result.baseline.adjustments),
            "trial": base.number if base else None,
            "status": base.status.value if base else None,
            "reason": base.reason if base else None,
            "plan": base.values if base else None,
            **_figures(base),
            "broken_on_this_stack": bool(result.picks.baseline_issues),
            "known_issues": [i.to_json() for i in result.picks.baseline_issues],
        },
        "speedup_over_baseline": head.speedup.to_json() if head.speedup else None,
        "verdict": result.verdict.to_json(),
        "tie_tolerance": req.tie_tolerance,
        "he_kernels": req.he_kernels if step_strategy(setup.step).uses_hybrid_engine else None,
        "stack": req.stack.to_json() if req.stack is not None else None,
        "interval": {"level": 0.9, "note": req.interval_note},
        "headroom": info.headroom,
        "memory_cap_bytes": int(req.cap_bytes),
        "gpu_capacity_bytes": int(setup.cluster.gpu.memory_bytes),
        "ranked_trials": [r.number for r in head.ranked],
        "runners_up": [_trial(r, pick.values) for r in head.runners_up[:3]] if pick else [],
        "same_figures_as_pick": [_trial(r, pick.values) for r in head.equivalents[:10]] if pick else [],
        "alternatives": [_job_pick(alt) for alt in result.picks.alternatives],
        "calibration": {
            "prediction_errors": prediction_errors(result.rows),
            "fits": [vars(h) for h in result.history],
        },
        "notes": result.notes,
        "files": files,
        "versions": versions(),
        "created": now_iso(),
    }


def _pick_hits(result: Any, plan: Any) -> tuple[str, ...]:
    """Ids of the broken known issues and stack rules the exported pick itself hits on the target stack."""
    from ..doctor import match_known_issues
    from ..plan import Context, stack_violations

    req = result.request
    setup = req.setup
    if req.stack is None:
        return ()
    ctx = Context(setup.cluster.world_size, model=setup.model, critic_model=setup.critic_model, stack=req.stack)
    issues = match_known_issues(plan_to_dict(plan), setup.model, req.stack)
    return tuple(i.id for i in issues if i.severity == "broken") + tuple(b.rule for b in stack_violations(plan, ctx))


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
        header = (
            f"{setup.model.name} {setup.step} on {info.hardware_label or setup.cluster.gpu.name}, "
            f"study {info.study_name} trial {pick.number} ({info.backend}); job: {result.picks.headline.job.label()}."
        )
        texts[step_strategy(setup.step).script.name] = launch_script(
            plan,
            model=setup.model,
            critic_model=setup.critic_model,
            cluster=setup.cluster,
            header=header,
            verdict=result.verdict.line,
            warnings=baseline_warnings(
                result.picks.baseline_issues,
                _pick_hits(result, plan),
                stack=req.stack.label if req.stack is not None else None,
            ),
            preflight=preflight_lines(req.stack) if req.stack is not None else (),
        )
        if req.stack is not None:
            texts[REQUIREMENTS] = requirements_text(req.stack)
    meta = {
        "step": setup.step,
        "model": setup.model.name,
        "critic_model": setup.critic_model.name if setup.critic_model else "",
        "gpus": setup.cluster.world_size,
        "gpu_type": setup.cluster.gpu.name,
        "backend": info.backend,
        "device": req.backend.device,
    }
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
