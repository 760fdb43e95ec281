"""Parallel search on one shared study: the same number of replay trials on 1 and on 2 workers.

    python scripts/bench_parallel.py --storage postgresql://postgres@127.0.0.1:5432/postgres
    python scripts/bench_parallel.py            # starts a throwaway PostgreSQL server (Debian's package)

Each worker is a real `dstune search --backend replay` process; a trial sleeps `--time-scale`
times the row's measured step time (the shipped CPU table's), so workers overlap as real trials
would. Prints `parallel_speedup: X` (wall time of 1 worker / 2 workers for the same total number
of trials) and `duplicates: N` (plans run more than once across workers).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "dstune" / "calibration" / "data" / "tiny-opt-ppo-2xcpu.csv"


def _worker(storage: str, out: Path, trials: int, scale: float, seed: int, name: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dstune",
        "search",
        "--model",
        "tiny-opt",
        "--gpus",
        "2",
        "--gpu-type",
        "A100-80G",
        "--backend",
        "replay",
        "--table",
        str(TABLE),
        "--space",
        str(ROOT / "search_spaces" / "tiny-ppo-table.yaml"),
        "--storage",
        storage,
        "--out",
        str(out),
        "--trials",
        str(trials),
        "--replay-time-scale",
        str(scale),
        "--seed",
        str(seed),
        "--json",
        "--study-name",
        f"bench-{name}",
    ]


def _run(storage: str, workers: int, total: int, scale: float, work: Path) -> tuple[float, int, int]:
    name = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            _worker(storage, work / f"{name}-{i}", total // workers, scale, i, name),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"worker failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")
    wall = time.perf_counter() - started
    import optuna

    from dstune.search._storage import make_storage

    rdb = make_storage(storage)
    study = optuna.load_study(study_name=f"bench-{name}", storage=rdb)
    ran = [
        t.user_attrs["key"]
        for t in study.get_trials()
        if t.user_attrs.get("status") in ("ok", "oom") and t.user_attrs.get("source") != "repeat"
    ]
    rdb.engine.dispose()  # no pooled connection may outlive the throwaway server
    return wall, len(ran), sum(n - 1 for n in Counter(ran).values())


@contextlib.contextmanager
def _throwaway_postgres():
    sys.path.insert(0, str(ROOT / "tests" / "search"))
    import conftest

    class Factory:
        def mktemp(self, name: str) -> Path:
            return Path(tempfile.mkdtemp(prefix=f"{name}-"))

    gen = conftest.postgres_url.__wrapped__(Factory())
    try:
        yield next(gen)
    finally:
        with contextlib.suppress(StopIteration):
            next(gen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", default=None, help="a PostgreSQL URL (default: start a throwaway server)")
    parser.add_argument("--trials", type=int, default=12, help="total trials per run")
    parser.add_argument("--time-scale", type=float, default=2.0)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as work,
        contextlib.nullcontext(args.storage) if args.storage else _throwaway_postgres() as storage,
    ):
        one = _run(storage, 1, args.trials, args.time_scale, Path(work))
        two = _run(storage, 2, args.trials, args.time_scale, Path(work))
    print(f"trials per run: {args.trials}; replay time scale {args.time_scale} (this machine, CPU only)")
    print(f"1 worker: {one[0]:.1f} s, {one[1]} plans run; 2 workers: {two[0]:.1f} s, {two[1]} plans run")
    print(f"parallel_speedup: {one[0] / two[0]:.2f}")
    print(f"duplicates: {one[2] + two[2]}", flush=True)


if __name__ == "__main__":
    main()
