"""`python3 -m dstune.acceptance --out DIR [--rehearse]`: the stages under one deadline, DIR snapshotted after each.

Started by scripts/gpu_acceptance.sh after it installed the wheelhouse (its --started-at is the shell's
start, so the install counts against the limit). Exit 0 when every stage ran and succeeded, 1 when one
failed or the deadline ended or skipped it (summary.json says which), 2 on a usage mistake.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ._deadline import Deadline
from ._snapshot import snapshot
from ._stages import Outcome, build_ops, python, run_stage, versions

LIMIT_S = 540.0
TRIAL_MARGIN_S = 20.0
"""What `dstune profile` needs around its own --timeout: start-up, the estimate, writing the result."""


def load_config(mode: str) -> dict[str, Any]:
    text = resources.files("dstune.acceptance").joinpath("trials.json").read_text(encoding="utf-8")
    return dict(json.loads(text)[mode])


class Run:
    """The summary as it grows, written with the archive after every stage."""

    def __init__(self, mode: str, deadline: Deadline, work: Path, out: Path) -> None:
        self.deadline, self.work, self.out = deadline, work, out
        self.summary: dict[str, Any] = {
            "mode": mode,
            "what": "measured on this machine"
            if mode == "gpu"
            else "CPU rehearsal (DS_ACCELERATOR=cpu), not GPU evidence",
            "started_utc": datetime.datetime.fromtimestamp(deadline.started, datetime.timezone.utc).isoformat(),
            "limit_s": deadline.limit_s,
            "stages": [],
            "rows": [],
            "vs_predicted": [],
            "finished": False,
        }

    def record(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            self.summary["stages"].append(outcome.to_json())
            print(f"[{self.elapsed():5.0f} s] {outcome.name}: {outcome.status} {outcome.detail}".rstrip(), flush=True)
        self.save()

    def elapsed(self) -> float:
        return time.time() - self.deadline.started

    def save(self) -> None:
        self.summary["elapsed_s"] = round(self.elapsed(), 1)
        snapshot(self.work, self.out, self.summary)

    @property
    def ok(self) -> bool:
        return all(stage["status"] == "ok" for stage in self.summary["stages"])


def _machine(mode: str) -> dict[str, Any] | None:
    if mode != "gpu":
        return None
    from ..calibration._acceptance import gpu_identity

    return gpu_identity()


def _imported(run: Run) -> None:
    """What the run really imports, in the summary and on stdout (the device's output tail)."""
    try:
        found = json.loads((run.work / "versions.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    run.summary["imported"] = found
    line = ", ".join(f"{name} {info.get('version', 'NOT IMPORTED')}" for name, info in found.items())
    print(f"imported: {line}", flush=True)
    run.save()


def _rows(run: Run, machine: dict[str, Any] | None) -> None:
    """Rows from every trial result so far (rewritten whole each time, so a cut leaves them consistent)."""
    from ..calibration._acceptance import write_rows

    trials = sorted(p for p in (run.work / "trials").glob("*.json") if p.stat().st_size > 0)
    doctor_path = run.work / "doctor.json"
    try:
        doctor = json.loads(doctor_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doctor = None
    run.summary["rows"] = write_rows(trials, run.work, machine, doctor)
    import csv

    with (run.work / "vs_predicted.csv").open(newline="", encoding="utf-8") as handle:
        run.summary["vs_predicted"] = list(csv.DictReader(handle))


def _unbuilt(run: Run, needs: list[str]) -> list[str]:
    """The ops a trial needs whose up-front build did not succeed (an op not built up front is not counted)."""
    status = {
        s["name"].removeprefix("build "): s["status"] for s in run.summary["stages"] if s["name"].startswith("build ")
    }
    return [op for op in needs if status.get(op, "ok") != "ok"]


def _trials(run: Run, config: dict[str, Any], env: dict[str, str], machine: dict[str, Any] | None) -> None:
    folder = run.work / "trials"
    folder.mkdir(exist_ok=True)
    for trial in config["trials"]:
        name = trial["name"]
        unbuilt = _unbuilt(run, trial.get("needs", []))
        if unbuilt:
            run.record([Outcome(f"trial {name}", "skipped", 0.0, f"needs {', '.join(unbuilt)}, which did not build")])
            continue
        if not run.deadline.fits(config["min_trial_s"]):
            run.record([Outcome(f"trial {name}", "skipped", 0.0, f"under {config['min_trial_s']} s left")])
            continue
        budget = run.deadline.budget(config["trial_cap_s"])
        argv = [python(), "-m", "dstune", "profile", *trial["args"], "--gpus", "1", "--json"]
        argv += ["--timeout", f"{max(1.0, budget - TRIAL_MARGIN_S):.0f}", "--out", str(folder / name)]
        outcome = run_stage(
            f"trial {name}",
            argv,
            env=env,
            cwd=run.work,
            log=folder / f"{name}.log",
            stdout=folder / f"{name}.json",
            timeout_s=budget,
        )
        _rows(run, machine)
        run.record([outcome])


def execute(
    mode: str, out: Path, deadline: Deadline, machine: dict[str, Any] | None, ops: list[str] | None = None
) -> int:
    """All stages in order; out/ holds summary.json and evidence.tar.gz from the first stage on."""
    config = load_config(mode)
    work = Path(tempfile.mkdtemp(prefix="dstune-acceptance-"))
    run = Run(mode, deadline, work, out)
    # Op builds go to a folder of their own (kept out of the archive, and out of other checkouts' builds).
    extensions = tempfile.mkdtemp(prefix="dstune-acceptance-ops-")
    env = {
        **os.environ,
        "DSTUNE_CACHE_DIR": str(work / "cache"),
        "TORCH_EXTENSIONS_DIR": extensions,
        "PYTHONUNBUFFERED": "1",
    }
    if mode == "rehearse":
        env["DS_ACCELERATOR"] = "cpu"
    run.save()
    run.record(versions(work, env, deadline))
    _imported(run)
    wanted = config["ops"] if ops is None else {op: 1.0 / len(ops) for op in ops}
    run.record(build_ops(wanted, work, env, config["arch"], deadline.budget(config["ops_cap_s"])))
    probe = [python(), "-m", "dstune", "doctor", "--json", "--refresh"]
    run.record(
        [
            run_stage(
                "HE probe (dstune doctor --refresh)",
                probe,
                env=env,
                cwd=work,
                log=work / "doctor.log",
                stdout=work / "doctor.json",
                timeout_s=deadline.budget(config["probe_cap_s"]),
            )
        ]
    )
    _trials(run, config, env, machine)
    run.summary["finished"] = True
    run.save()
    print(f"[{run.elapsed():5.0f} s] done: {out}/summary.json and {out}/evidence.tar.gz", flush=True)
    for folder in (work, Path(extensions)):  # everything worth keeping is in the archive now
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if run.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m dstune.acceptance", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="an empty or new folder ($OUT on the device)")
    parser.add_argument("--rehearse", action="store_true", help="the CPU rehearsal: tiny models, DS_ACCELERATOR=cpu")
    parser.add_argument("--started-at", type=float, default=None, help="epoch seconds the deadline counts from")
    parser.add_argument("--limit-s", type=float, default=LIMIT_S, help="the whole run, install included")
    parser.add_argument("--ops", default=None, help="comma-separated op builders instead of the mode's own")
    args = parser.parse_args(argv)
    try:
        if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
            raise UserInputError(f"--out {args.out} is not empty")
        mode = "rehearse" if args.rehearse else "gpu"
        machine = _machine(mode)  # no GPU: refused before anything is written
        args.out.mkdir(parents=True, exist_ok=True)
        deadline = Deadline(started=args.started_at or time.time(), limit_s=args.limit_s)
        ops = [op for op in args.ops.split(",") if op] if args.ops is not None else None
        return execute(mode, args.out, deadline, machine, ops)
    except (UserInputError, OSError) as error:
        print(f"gpu_acceptance: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
