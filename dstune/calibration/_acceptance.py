"""Rows for the evidence corpus from this project's own trials (scripts/gpu_acceptance.sh).

Each `dstune profile --json` result of the acceptance run becomes one row in the corpus format
(data/evidence/rows.csv's columns, source `dstune-acceptance`: measured by this project), naming
the GPU as NVML reports it, the stack (the trial's own versions, the NVIDIA driver) and the date.
Measured and predicted figures side by side go to vs_predicted.csv, like for like: the allocator's
peak (max_memory_allocated) against the predicted allocator figure, the device's (allocator peak
reserved plus what NVML sees outside it) against the predicted device peak, and each phase's time.
Every row is kept out of the fit (in_fit 0) until it can be scored with its own stack. A CPU trial
(the rehearsal, DS_ACCELERATOR=cpu) gives a row only to check this path: gpu_type `cpu`, and no
comparison with a GPU prediction.

    python -m dstune.calibration._acceptance check-gpu
    python -m dstune.calibration._acceptance rows --out DIR [--doctor doctor.json] TRIAL.json...
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ._evidence import ROWS_FILE, _row

SOURCE_KEY = "dstune-acceptance"
SOURCE = {
    "title": "measured by this project: scripts/gpu_acceptance.sh (dstune profile on one GPU)",
    "where": "dstune repository, scripts/gpu_acceptance.sh; each row's cell names the trial and its result file",
    "method": "dstune profile: real DeepSpeed-Chat engines built from the catalog config with random weights, "
    "synthetic tokens, the mean step time of the measured steps after warm-up; samples/s = samples per "
    "step / step time; peak = torch.cuda.max_memory_allocated, max over ranks; kept out of the fit until "
    "scored with the stack it ran on",
    "reproduction": "fixed_plan",
}
GIB = 2**30
FIGURES = ("samples_per_s", "step_s", "peak_alloc_gib", "device_peak_gib")


def corpus_columns() -> list[str]:
    """The corpus header, read from the shipped rows.csv so the two never drift apart."""
    with ROWS_FILE.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle))


def gpu_identity() -> dict[str, Any]:
    """What NVML says this machine's GPUs are, and the driver; UserInputError without a CUDA GPU."""
    from ..catalog import detect_local_gpus

    detected = detect_local_gpus()
    if not detected:
        raise UserInputError("no CUDA GPU here (NVML finds none); --rehearse runs the CPU rehearsal instead")
    import torch

    if not torch.cuda.is_available():
        raise UserInputError(f"NVML sees {detected[0].nvml_name} but torch {torch.__version__} cannot use CUDA")
    import pynvml

    pynvml.nvmlInit()
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
    finally:
        pynvml.nvmlShutdown()
    first = detected[0]
    return {
        "nvml_name": first.nvml_name,
        "count": len(detected),
        "memory_gib": round(first.memory_bytes / GIB, 1),
        "catalog": first.spec.name if first.spec else None,
        "driver": driver if isinstance(driver, str) else driver.decode(),
    }


def _flag(value: Any) -> str:
    return str(int(value)) if isinstance(value, bool) else str(value)


def _settings(plan: Mapping[str, Any]) -> str:
    return ";".join(f"{k}={_flag(v)}" for k, v in plan.items())


def _phases(phases: Mapping[str, float]) -> str:
    return ";".join(f"{k}={v:.6g}" for k, v in phases.items())


def _spec(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's spec.json (warm-up and measured steps), when its directory is still there."""
    try:
        return json.loads((Path(payload["trial_dir"]) / "spec.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def predicted_allocator_bytes(predicted: Mapping[str, Any]) -> float | None:
    """The prediction's allocator figure (torch's max allocated): as the estimate states it, or for an older
    record its device peak less the CUDA context and the allocator overhead the cost model added on top
    (DEFAULT_CONSTANTS, as `dstune profile` predicts)."""
    from ..costmodel import DEFAULT_CONSTANTS
    from ..costmodel._estimate import TRANSIENT_COMPONENTS

    memory = predicted.get("memory") or {}
    peak, parts = memory.get("gpu_peak_bytes"), memory.get("gpu") or {}
    if not peak:
        return None
    if memory.get("gpu_allocated_bytes"):
        return float(memory["gpu_allocated_bytes"])
    transient = sum(float(parts.get(name, 0.0)) for name in TRANSIENT_COMPONENTS)
    c = DEFAULT_CONSTANTS
    return float(peak) - c.cuda_context_bytes - c.memory_overhead_fraction * transient


def _gib(value: float | None) -> float | None:
    return value / GIB if value else None


def measured_vs_predicted(payload: Mapping[str, Any]) -> dict[str, tuple[float | None, float | None]]:
    """figure -> (measured, predicted), like for like; a CPU trial has no prediction to compare with."""
    predicted = payload.get("predicted") or {}
    on_gpu = payload.get("device") != "cpu"
    memory = payload.get("memory") or {}
    pred_memory = predicted.get("memory") or {}
    pairs = {
        "samples_per_s": (
            payload["throughput"]["samples_per_s"],
            (predicted.get("throughput") or {}).get("samples_per_s"),
        ),
        "step_s": (payload["time"]["step_s"], (predicted.get("time") or {}).get("step_s")),
        "peak_alloc_gib": (_gib(memory.get("gpu_peak_bytes")), _gib(predicted_allocator_bytes(predicted))),
        "device_peak_gib": (_gib(memory.get("device_peak_bytes")), _gib(pred_memory.get("gpu_peak_bytes"))),
    }
    pred_phases = (predicted.get("time") or {}).get("phases") or {}
    for phase, seconds in (payload["time"].get("phases") or {}).items():
        pairs[f"phase_s:{phase}"] = (seconds, pred_phases.get(phase))
    for phase, peak in (memory.get("phase_peak_bytes") or {}).items():
        pairs[f"phase_peak_gib:{phase}"] = (_gib(peak), None)  # the cost model predicts one peak, not per phase
    return {k: (m, p if on_gpu else None) for k, (m, p) in pairs.items()}


def _trial_facts(payload: Mapping[str, Any]) -> str:
    """HE kernels, skipped updates and per-phase peaks, said in the row's `stated` cell."""
    he = payload.get("he_kernels")
    if he is None:
        he_text = "no Hybrid Engine in this trial"
    else:
        he_text = "HE kernels ran generation" if he else "HE not active (generation used generate())"
    skipped = payload.get("skipped_steps") or {}
    skipped_text = ", ".join(f"{role} {n}" for role, n in skipped.items()) or "none recorded"
    peaks = (payload.get("memory") or {}).get("phase_peak_bytes") or {}
    kind = "allocator" if payload.get("device") != "cpu" else "sampled RSS"
    peak_text = ", ".join(f"{k} {v / GIB:.3g}" for k, v in peaks.items())
    return (
        f"he_kernels={'' if he is None else int(he)} ({he_text}); optimizer updates skipped in the measured "
        f"steps: {skipped_text}" + (f"; per-phase peaks ({kind}, GiB): {peak_text}" if peaks else "")
    )


def acceptance_row(
    name: str, payload: Mapping[str, Any], machine: Mapping[str, Any] | None, date: str
) -> dict[str, str] | None:
    """The corpus row of one trial (None for a trial that neither ran nor ran out of memory)."""
    status = payload.get("status")
    if status not in ("ok", "oom"):
        return None
    predicted = payload.get("predicted") or {}
    plan = predicted.get("plan") or {}
    versions = payload.get("versions") or {}
    spec = _spec(payload)
    steps = f"{spec.get('warmup', '?')} warm-up + {spec.get('steps', '?')} measured steps"
    stack = ", ".join(f"{k} {versions[k]}" for k in ("torch", "deepspeed", "transformers", "dstune") if k in versions)
    on_gpu = payload.get("device") != "cpu" and machine is not None
    figures = measured_vs_predicted(payload)
    ok = status == "ok"
    sps, step_s, peak = (figures[f][0] for f in FIGURES[:3])
    if on_gpu:
        assert machine is not None
        hardware = f"{machine['count']}x {machine['nvml_name']} (NVML), driver {machine['driver']}"
        gpu_type = machine["catalog"] or machine["nvml_name"]
        basis = f"dstune profile step time ({steps}); kept out of the fit until scored with its own stack"
    else:
        hardware = "the CPU (DS_ACCELERATOR=cpu)"
        gpu_type = "cpu"
        basis = f"CPU code-path check (DS_ACCELERATOR=cpu), not a GPU measurement ({steps})"
    published = (
        f"{sps:.4g} samples/s, step {step_s:.4g} s" + (f", peak {peak:.3g} GiB" if peak else "")
        if ok
        else "out of memory"
    )
    pred_sps = figures["samples_per_s"][1]
    if ok and pred_sps:
        published += f" (predicted {pred_sps:.4g} samples/s for {predicted.get('gpu_type')})"
    row = {
        "id": f"acc-{date}-{gpu_type.lower()}-{name}",
        "source": SOURCE_KEY,
        "cell": f"gpu_acceptance trial {name}, {date}, dstune profile --json result",
        "step": predicted.get("step", ""),
        "model": predicted.get("model", ""),
        "critic_model": predicted.get("critic_model") or "",
        "gpu_type": gpu_type,
        "gpus": str(payload.get("world_size", predicted.get("gpus", 1))),
        "nodes": str(predicted.get("nodes", 1)),
        "samples": "",
        "settings": _settings(plan),
        "published": published,
        "epoch_time_s": "",
        "samples_per_s": f"{sps:.6g}" if ok else "",
        "phase_s": _phases(payload["time"]["phases"]) if ok else "",
        "peak_alloc_gib": f"{peak:.4g}" if ok and peak else "",
        "fits": "1" if ok else "0",
        "metric": "end_to_end",
        "basis": basis,
        "in_fit": "0",
        "stated": f"measured by this project on {hardware}, {date}; {stack}; {_trial_facts(payload)}; "
        "the whole plan is in settings",
        "assumed": "nothing beyond the plan: random weights and synthetic tokens of the stated lengths",
    }
    return {column: row.get(column, "") for column in corpus_columns()}


def _csv(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_rows(
    trials: Sequence[Path], out: Path, machine: Mapping[str, Any] | None, doctor: Mapping[str, Any] | None = None
) -> list[str]:
    """Write rows.csv, vs_predicted.csv and sources.json into `out`; returns one summary line per trial."""
    date = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    rows, comparisons, lines = [], [], []
    for path in trials:
        try:
            payload = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            lines.append(f"{Path(path).stem}: no result ({error})")
            continue
        name = Path(path).stem
        row = acceptance_row(name, payload, machine, date)
        if row is None:
            lines.append(f"{name}: {payload.get('status')}: {str(payload.get('error') or '')[:160]} (no row)")
            continue
        _row(row)  # the corpus loader must read it
        rows.append(row)
        for figure, (measured, predicted) in measured_vs_predicted(payload).items():
            ratio = measured / predicted if measured and predicted else None
            comparisons.append(
                {
                    "id": row["id"],
                    "figure": figure,
                    "measured": "" if measured is None else f"{measured:.6g}",
                    "predicted": "" if predicted is None else f"{predicted:.6g}",
                    "measured_over_predicted": "" if ratio is None else f"{ratio:.3f}",
                }
            )
        ratio_text = next(
            (
                c["measured_over_predicted"]
                for c in comparisons[::-1]
                if c["id"] == row["id"] and c["figure"] == "samples_per_s"
            ),
            "",
        )
        lines.append(
            f"{name}: {payload['status']}, {row['published']}"
            + (f", measured/predicted {ratio_text}" if ratio_text else "")
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.csv").write_text(_csv(rows, corpus_columns()), encoding="utf-8")
    columns = ("id", "figure", "measured", "predicted", "measured_over_predicted")
    (out / "vs_predicted.csv").write_text(_csv(comparisons, columns), encoding="utf-8")
    source: dict[str, Any] = dict(SOURCE)
    if doctor is not None:  # the HE probe's verdicts on this stack, next to the HE rows they explain
        source["doctor_hybrid_engine"] = doctor.get("hybrid_engine")
        source["doctor_versions"] = doctor.get("versions")
    (out / "sources.json").write_text(json.dumps({SOURCE_KEY: source}, indent=1) + "\n", encoding="utf-8")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dstune.calibration._acceptance", description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("check-gpu", help="print the GPU as NVML names it; exit 2 without one")
    rows = sub.add_parser("rows", help="write corpus rows from dstune profile --json results")
    rows.add_argument("--out", type=Path, required=True)
    rows.add_argument("--doctor", type=Path, default=None, help="dstune doctor --json output, kept with the source")
    rows.add_argument("--cpu", action="store_true", help="CPU trials (no GPU to name)")
    rows.add_argument("trials", nargs="+", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.mode == "check-gpu":
            print(json.dumps(gpu_identity()))
            return 0
        machine = None if args.cpu else gpu_identity()
        doctor = json.loads(args.doctor.read_text(encoding="utf-8")) if args.doctor else None
        for line in write_rows(args.trials, args.out, machine, doctor):
            print(line)
    except (UserInputError, OSError, ValueError) as error:
        print(f"gpu_acceptance: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
