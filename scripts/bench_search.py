"""Search efficiency on recorded tables: trials until a plan within 2% of the table's best is found.

    # record a real table (tiny models, CPU; about a minute per plan on 2 cores)
    DS_ACCELERATOR=cpu python scripts/bench_search.py record --model tiny-opt --gpus 2 \
        --space search_spaces/tiny-ppo-table.yaml --plans 20 --table dstune/calibration/data/tiny-opt-ppo-2xcpu.csv
    # a larger table from the cost model with perturbed constants, clearly labelled simulated
    python scripts/bench_search.py simulate-table --table scripts/tables/simulated-opt-1.3b-ppo-8xA100-80G.csv
    # compare strategies (replay backend), median over seeds
    python scripts/bench_search.py bench --seeds 20
    # wall time of the main job (simulate, export and report) against `import torch, deepspeed`
    python scripts/bench_search.py simulate

Every strategy runs the same dstune study loop over a replay backend, seeded with the
DeepSpeed-Chat baseline as trial 0 when the table has it; only plans the table holds cost a trial
(others are recorded as infeasible, free). Strategies: dstune, prior (dstune with learning off: the
cost model's first ranking), autotuner (DeepSpeed's rule), TPE, random, grid. Seed 0 replays the
whole table, seed s > 0 a bootstrap of its rows, so the spread is real. A table replays with the
stack it was recorded on (`<table>.stack.json`). The last lines compare dstune's median trials,
pooled over the measured tables: `ratio_vs_prior` (the gain from learning), its worst table,
`ratio_vs_autotuner`, `ratio_vs_tpe`, then `real_tables: N`. `bench --quick` is CI's (one table).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from _bench_replay import (  # noqa: E402 - the script's own helper module, beside it
    WITHIN,
    _setup,
    _simulated,
    _space_of_table,
    _step_of,
    load_replay,
    prior_rank_of_best,
    simulate_table,
    trials_to_target,
)

STRATEGIES = ("dstune", "prior", "autotuner", "tpe", "random", "grid")
ALL_STRATEGIES = (*STRATEGIES, "gp")


def record(args: argparse.Namespace) -> None:
    """Profile `--plans` plans drawn at random from the space (plus the baseline) into a CSV table."""
    from dstune.doctor import current_stack
    from dstune.export import atomic_write, trials_table
    from dstune.search import ProfileBackend, SearchRequest, load_space, run_search
    from dstune.search._tablestack import describe_host, write_table_stack

    space = load_space(args.space)
    setup = _setup(args.model, args.gpus, args.gpu_type, space.step, args.critic_model)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    backend = ProfileBackend(
        model=setup.model,
        critic_model=setup.critic_model,
        cluster=setup.cluster,
        trials_dir=work / "trials",
        warmup=args.warmup,
        steps=args.steps,
        timeout_s=args.timeout,
    )
    req = SearchRequest(
        setup=setup,
        space=space,
        backend=backend,
        storage=f"sqlite:///{work.resolve()}/study.db",
        study_name=f"record-{args.model}-{args.gpus}-{space.step}",
        trials=args.plans,
        seed=args.seed,
        sampler="random",
    )

    meta = {
        "step": space.step,
        "model": setup.model.name,
        "critic_model": setup.critic_model.name if setup.critic_model else "",
        "gpus": setup.cluster.world_size,
        "gpu_type": setup.cluster.gpu.name,
        "backend": "profile",
        "device": backend.device or "cpu",
    }
    Path(args.table).parent.mkdir(parents=True, exist_ok=True)
    write_table_stack(args.table, describe_host(current_stack(), meta["device"]))

    def measured(rows):
        return [r for r in rows if r.status in ("ok", "oom", "timeout", "error", "crashed") and r.source != "repeat"]

    def progress(row, rows):
        ok = row.measured.samples_per_s if row.measured else None
        print(f"trial {row.number}: {row.status} {ok if ok else ''} {row.reason[:80]}", flush=True)
        atomic_write(Path(args.table), trials_table(sorted(measured(rows), key=lambda r: r.number), space.step, meta))

    result = run_search(req, progress=progress)
    rows = measured(result.rows)
    atomic_write(Path(args.table), trials_table(rows, space.step, meta))
    print(f"wrote {len(rows)} measured rows to {args.table}")


MIN_ROWS = 20
"""A table with fewer measured rows (one still being recorded) is listed but left out of the figures."""


def _bench_table(path: Path, args: argparse.Namespace) -> dict[str, list[int]]:
    """One table: where the first ranking puts its best row, then each strategy's trials per seed."""
    replay = load_replay(path)
    rank, reachable = prior_rank_of_best(path)
    stack = replay.stack
    recorded = (
        f"stack {', '.join(f'{k} {stack.versions.get(k)}' for k in ('deepspeed', 'transformers'))}, "
        f"HE verdicts {dict(stack.he_verdicts)}"
        if stack
        else "no recorded stack: known issues not applied"
    )
    print(
        f"\n{path.name}: {len(replay.rows)} rows, {reachable} reachable; {recorded}; the cost model's first "
        f"ranking puts the best row at {rank} of {reachable}"
    )
    if len(replay.rows) < MIN_ROWS:
        print(f"  left out: under {MIN_ROWS} rows")
        return {}
    print(f"  {'strategy':10} {'median':>7} {'p25':>5} {'p75':>5} {'min':>4} {'max':>4} {'found':>6} {'s/run':>6}")
    cap_trials = min(len(replay.rows), args.max_trials)
    out: dict[str, list[int]] = {}
    for strategy in args.strategies:
        seeds = args.seeds if strategy != "gp" else min(args.seeds, args.gp_seeds)
        counts, found, times = [], 0, []
        for seed in range(seeds):
            asks = args.gp_asks if strategy == "gp" else args.asks
            n, hit, wall = trials_to_target(path, strategy, seed, cap_trials, asks)
            counts.append(n if hit else cap_trials)
            found += hit
            times.append(wall)
        out[strategy] = counts
        q = np.percentile(counts, [25, 50, 75])
        print(
            f"  {strategy:10} {q[1]:7.1f} {q[0]:5.1f} {q[2]:5.1f} {min(counts):4d} {max(counts):4d} "
            f"{found:3d}/{seeds:<2d} {statistics.mean(times):6.2f}",
            flush=True,
        )
    return out


def _ratio(ours: list[int], theirs: list[int]) -> float:
    return statistics.median(ours) / statistics.median(theirs)


def _summary(tables: list[Path], per_table: list[dict[str, list[int]]]) -> None:
    """Ratios of dstune's median trials over each reference strategy's, pooled over the real tables."""
    real = [r for path, r in zip(tables, per_table) if r and not _simulated(path)]
    model = [r for path, r in zip(tables, per_table) if r and _simulated(path)]
    names = [p.name for p, r in zip(tables, per_table) if r and not _simulated(p)]
    print("\nreal (measured) tables: " + (", ".join(names) or "none"))

    def line(label: str, theirs: str, group: list[dict[str, list[int]]] = real) -> None:
        ours = [c for r in group for c in r.get("dstune", [])]
        other = [c for r in group for c in r.get(theirs, [])]
        print(f"{label}: {_ratio(ours, other):.2f}" if ours and other else f"{label}: n/a")

    for theirs in ("prior", "autotuner", "tpe"):
        ratios = [f"{_ratio(r['dstune'], r[theirs]):.2f}" for r in real if r.get("dstune") and r.get(theirs)]
        print(f"per-table ratio (dstune / {theirs}): {', '.join(ratios) or 'n/a'}")
    line("ratio_vs_tpe_cost_model_tables", "tpe", model)
    line("ratio_vs_prior", "prior")
    worst = [_ratio(r["dstune"], r["prior"]) for r in real if r.get("dstune") and r.get("prior")]
    print(f"worst_table_ratio_vs_prior: {max(worst):.2f}" if worst else "worst_table_ratio_vs_prior: n/a")
    line("ratio_vs_autotuner", "autotuner")
    line("ratio_vs_tpe", "tpe")
    print(f"real_tables: {len(real)}")


def bench(args: argparse.Namespace) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    simulated = ROOT / "scripts" / "tables" / "simulated-opt-1.3b-ppo-8xA100-80G.csv"
    if not args.table and not simulated.exists():
        simulate_table(argparse.Namespace(table=str(simulated)))
    tables = [Path(t) for t in args.table] or sorted((ROOT / "dstune" / "calibration" / "data").glob("*.csv")) + sorted(
        (ROOT / "scripts" / "tables").glob("*.csv")
    )
    print(
        f"trials until within {WITHIN:.0%} of the best row a strategy can propose (seed 0: the whole table; "
        f"seeds 1..{args.seeds - 1}: bootstraps of its rows; a miss counts as the trial cap); "
        "replayed on this machine, each table with the stack it was recorded on"
    )
    _summary(tables, [_bench_table(path, args) for path in tables])


def learning_curve(args: argparse.Namespace) -> None:
    """Prediction error for the next measured plan, before it is measured, after k measurements
    (constants refitted, GP residual from 5 points): median |log(measured / predicted)| over orderings."""
    from dstune.plan import Context
    from dstune.search import Observation, Surrogate, build_grid, read_table

    path = Path(args.table)
    step = _step_of(path)
    rows = [r for r in read_table(path, step) if r.status == "ok"]
    extra = rows[0].extra
    setup = _setup(extra["model"], int(extra["gpus"]), extra["gpu_type"], step, extra.get("critic_model"))
    space = _space_of_table(rows, step, path)
    grid = build_grid(
        space, Context(world_size=setup.cluster.world_size, model=setup.model, critic_model=setup.critic_model)
    )
    rng = np.random.default_rng(0)
    sizes = [k for k in (0, 1, 2, 3, 5, 8, 12, 20, 40) if k < len(rows)]
    errors: dict[int, list[float]] = {k: [] for k in sizes}
    for _ in range(args.orderings):
        order = rng.permutation(len(rows))
        obs = [
            Observation(rows[i].values, "ok", rows[i].measured.samples_per_s, rows[i].measured.gpu_peak_bytes, setup)
            for i in order
        ]
        for k in sizes:
            surrogate = Surrogate(grid=grid, setup=setup, cap_bytes=setup.cluster.gpu.memory_bytes * 0.9)
            surrogate.refit(obs[:k])
            held = obs[k:]
            pred, _ = surrogate.predict_values([o.values for o in held])
            errors[k].extend(np.abs(pred.log_sps - np.log([o.samples_per_s for o in held])).tolist())
    print(f"{path.name}: median |log(measured/predicted)| samples/s on unseen plans after k measurements")
    for k in sizes:
        print(f"  k={k:3d}: {np.median(errors[k]):.3f}  (x{np.exp(np.median(errors[k])):.2f})")


def _wall(argv: list[str], env: dict[str, str]) -> float:
    import subprocess

    started = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


SEARCH_ARGV = ["-m", "dstune", "search", "--model", "opt-6.7b", "--gpus", "8", "--gpu-type", "A100-80G"]


def simulate_search(args: argparse.Namespace) -> None:
    """`dstune search --model opt-6.7b --gpus 8` end to end (simulate, export and report) in a fresh process
    with a fresh --out each run, against a fresh process that only runs `import torch, deepspeed`, measured
    alternately in the same loop so both see the same machine load; medians of --runs.

    dstune keeps two answers per installed stack under its cache: the doctor's HE probe, and the exports'
    DeepSpeed configs that DeepSpeedConfig accepted. The first run starts from an empty cache (cold: the
    probe runs, the configs are checked). `simulate_search_s` is the warm run (both cached, as when the
    same search runs again); `simulate_search_new_pick_s` empties the accepted configs first, so the
    check runs in its early-started process as for a pick never exported on this machine."""
    import os
    import tempfile

    search, new_pick, imports = [], [], []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as work:
        cache = Path(work) / "cache"
        env = dict(os.environ, DSTUNE_CACHE_DIR=str(cache))
        env.pop("DS_ACCELERATOR", None)
        cold = _wall([sys.executable, *SEARCH_ARGV, "--out", f"{work}/cold"], env)
        for run in range(args.runs):
            imports.append(_wall([sys.executable, "-c", "import torch, deepspeed"], env))
            search.append(_wall([sys.executable, *SEARCH_ARGV, "--out", f"{work}/run{run}"], env))
            (cache / "accepted_ds_configs.json").unlink()
            new_pick.append(_wall([sys.executable, *SEARCH_ARGV, "--out", f"{work}/new{run}"], env))
    s, n, i = statistics.median(search), statistics.median(new_pick), statistics.median(imports)
    load_after = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs; load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(f"runs: {args.runs} (medians; this machine, CPU only)")
    print(f"import_runs_s: {' '.join(f'{x:.2f}' for x in imports)}")
    print(f"simulate_search_runs_s: {' '.join(f'{x:.2f}' for x in search)}")
    print(f"simulate_search_new_pick_runs_s: {' '.join(f'{x:.2f}' for x in new_pick)}")
    print(f"simulate_search_cold_cache_s: {cold:.2f} (HE probe and config check both run)")
    print(f"simulate_search_new_pick_s: {n:.2f} (ratio {n / i:.2f}: probe cached, configs checked)")
    print(f"import_torch_deepspeed_s: {i:.2f}")
    print(f"simulate_search_s: {s:.2f}")
    print(f"ratio_vs_import: {s / i:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode")
    rec = sub.add_parser("record", help="profile random plans of a space into a table")
    rec.add_argument("--model", default="tiny-opt")
    rec.add_argument("--critic-model", default=None)
    rec.add_argument("--gpus", type=int, default=2)
    rec.add_argument("--gpu-type", default="A100-80G")
    rec.add_argument("--space", default=str(ROOT / "search_spaces" / "tiny-ppo-table.yaml"))
    rec.add_argument("--plans", type=int, default=20)
    rec.add_argument("--seed", type=int, default=0)
    rec.add_argument("--warmup", type=int, default=1)
    rec.add_argument("--steps", type=int, default=2)
    rec.add_argument("--timeout", type=float, default=600)
    rec.add_argument("--work", default=str(ROOT / "reports" / "bench-record"))
    rec.add_argument("--table", required=True)
    sim = sub.add_parser("simulate-table", help="write a simulated table (labelled) from perturbed constants")
    sim.add_argument("--table", default=str(ROOT / "scripts" / "tables" / "simulated-opt-1.3b-ppo-8xA100-80G.csv"))
    ben = sub.add_parser("bench", help="compare strategies on tables")
    ben.add_argument("--table", action="append", default=[])
    ben.add_argument("--seeds", type=int, default=20)
    ben.add_argument(
        "--quick",
        action="store_true",
        help="CI: the 24-row table, 3 seeds (seconds); the last lines are the same",
    )
    ben.add_argument("--gp-seeds", type=int, default=20)
    ben.add_argument("--max-trials", type=int, default=150)
    ben.add_argument(
        "--asks",
        type=int,
        default=50,
        help="Optuna asks allowed per counted trial (off-table proposals and repeats are free)",
    )
    ben.add_argument("--gp-asks", type=int, default=5, help="the same for GPSampler, whose asks cost ~1 s each")
    ben.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=ALL_STRATEGIES)
    sim_search = sub.add_parser("simulate", help="time the simulated main job against importing torch+deepspeed")
    sim_search.add_argument("--runs", type=int, default=5)
    cur = sub.add_parser("curve", help="prediction error vs number of measurements on a table")
    cur.add_argument("--table", default=str(ROOT / "dstune" / "calibration" / "data" / "tiny-opt-ppo-2xcpu.csv"))
    cur.add_argument("--orderings", type=int, default=10)
    args = parser.parse_args(argv)
    if args.mode == "curve":
        learning_curve(args)
    elif args.mode == "simulate":
        simulate_search(args)
    elif args.mode == "record":
        record(args)
    elif args.mode == "simulate-table":
        simulate_table(args)
    else:
        if args.mode is None:
            args = ben.parse_args([])
        if args.quick:
            args.table = args.table or [str(ROOT / "dstune" / "calibration" / "data" / "tiny-opt-ppo-2xcpu.csv")]
            args.seeds = min(args.seeds, 3)
        bench(args)


if __name__ == "__main__":
    sys.exit(main())
