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
(others are recorded as infeasible, free). The last line is `ratio_vs_tpe: R`, our median over
TPE's (pooled over tables).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("dstune", "tpe", "gp", "random", "grid", "autotuner")
WITHIN = 0.02
_GRIDS: dict = {}


def _setup(model: str, gpus: int, gpu_type: str, step: str, critic: str | None):
    from dstune.catalog import default_critic, load_gpu, load_model, make_cluster
    from dstune.plan import step_strategy
    from dstune.search import Setup

    spec = load_model(model)
    uses_critic = step_strategy(step).uses_critic
    critic_spec = (load_model(critic) if critic else default_critic(spec)) if uses_critic else None
    return Setup(step=step, model=spec, critic_model=critic_spec, cluster=make_cluster(load_gpu(gpu_type), gpus))


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


def simulate_table(args: argparse.Namespace) -> None:
    """Every plan of a reduced PPO space scored by the cost model with perturbed constants (the hidden
    'truth' the searchers must learn) and 3% noise. Labelled SIMULATED in the device column."""
    from dstune.costmodel import DEFAULT_CONSTANTS, estimate_table
    from dstune.export import trials_table
    from dstune.plan import Context
    from dstune.search import Figures, TrialRow, build_grid, load_space
    from dstune.search._space import lora_defaults

    setup = _setup("opt-1.3b", 8, "A100-80G", "ppo", None)
    space = load_space(ROOT / "search_spaces" / "ppo.yaml").with_fixed(
        {
            "offload_reference_model": False,
            "unpin_actor_parameters": False,
            "release_inference_cache": False,
            "critic_gradient_checkpointing": False,
        }
    )
    grid = build_grid(
        space,
        Context(world_size=8, model=setup.model, critic_model=setup.critic_model),
        lora_defaults("ppo", "opt", "opt"),
    )
    truth = dataclasses.replace(
        DEFAULT_CONSTANTS,
        matmul_efficiency_max=0.40,
        hbm_efficiency=0.50,
        decode_overhead_per_layer_s_he=7e-5,
        decode_overhead_per_layer_s_native=6e-4,
        memory_overhead_fraction=0.15,
        cuda_context_bytes=2.0e9,
        comm_overlap=0.3,
    )
    table = estimate_table(
        "ppo", grid.columns, setup.model, setup.cluster, critic_model=setup.critic_model, constants=truth
    )
    rng = np.random.default_rng(0)
    noise = np.exp(rng.normal(0, 0.03, len(grid)))
    rows = []
    for i in range(len(grid)):
        peak = float(table["gpu_peak_bytes"][i])
        fits = peak <= setup.cluster.gpu.memory_bytes and bool(table["fits_host"][i])
        figures = Figures(
            basis="measured",
            samples_per_s=float(table["samples_per_s"][i] * noise[i]),
            tokens_per_s=float(table["tokens_per_s"][i] * noise[i]),
            gpu_peak_bytes=peak,
            step_s=float(table["step_s"][i] / noise[i]),
            phases={k[5:]: float(v[i]) for k, v in table.items() if k.startswith("time_")},
            mfu=float(table["mfu"][i]),
        )
        rows.append(
            TrialRow(
                i,
                "ok" if fits else "oom",
                "simulated",
                grid.values(i),
                None,
                figures if fits else None,
                None,
                "" if fits else "simulated OOM",
            )
        )
    meta = {
        "step": "ppo",
        "model": setup.model.name,
        "critic_model": setup.critic_model.name,
        "gpus": 8,
        "gpu_type": "A100-80G",
        "backend": "simulated-table",
        "device": "SIMULATED: cost model with perturbed constants, not a measurement",
    }
    Path(args.table).parent.mkdir(parents=True, exist_ok=True)
    Path(args.table).write_text(trials_table(rows, "ppo", meta))
    print(f"wrote {len(rows)} simulated rows to {args.table}")


def _space_of_table(rows, step: str, path: Path):
    """A space whose grid spans the table: each knob's distinct values; a knob equal to an earlier
    one on every row (e.g. training batch = generation batch) is tied to it, as in the space file."""
    from dstune.plan import knob_fields
    from dstune.search import BatchPolicy, SearchSpace

    knobs, fixed, ties = {}, {}, {}
    for f in knob_fields(step):
        column = [r.values[f.name] for r in rows]
        values = list(dict.fromkeys(column))
        twin = next((k for k in knobs if [r.values[k] for r in rows] == column), None)
        if len(values) > 1 and twin:
            ties[f.name] = twin
        elif len(values) > 1:
            knobs[f.name] = tuple(sorted(values))
        else:
            fixed[f.name] = values[0]
    return SearchSpace(
        path=str(path),
        step=step,
        knobs=knobs,
        fixed=fixed,
        ties=ties,
        batch=BatchPolicy(policy="token_cap", max_tokens=2**62),
    )


def trials_to_target(
    path: Path, strategy: str, seed: int, cap_trials: int, asks_per_trial: int = 50
) -> tuple[int, bool, float]:
    """Backend calls until a plan within 2% of the table's best feasible throughput is measured."""
    from dstune.search import ReplayBackend, SearchRequest, StopSearch, read_table, run_search

    rows = read_table(path, _step_of(path))
    extra = rows[0].extra
    setup = _setup(extra["model"], int(extra["gpus"]), extra["gpu_type"], _step_of(path), extra.get("critic_model"))
    cap = setup.cluster.gpu.memory_bytes * 0.9
    ok = [r for r in rows if r.status == "ok" and (r.measured.gpu_peak_bytes or 0) <= cap]
    best = max(r.measured.samples_per_s for r in ok)
    backend = ReplayBackend(path, setup.step)
    calls = {"n": 0}
    real = backend.evaluate

    def counting(plan):
        calls["n"] += 1
        return real(plan)

    backend.evaluate = counting
    hit = {"found": False}

    def progress(row, _rows):
        if (
            row.source != "repeat"
            and row.status == "ok"
            and row.measured
            and row.measured.samples_per_s >= (1 - WITHIN) * best
            and (row.measured.gpu_peak_bytes or 0) <= cap
        ):
            hit["found"] = True
            raise StopSearch

    space = _space_of_table(rows, setup.step, path)
    if path not in _GRIDS:
        from dstune.plan import Context
        from dstune.search import build_grid

        _GRIDS[path] = build_grid(
            space, Context(world_size=setup.cluster.world_size, model=setup.model, critic_model=setup.critic_model)
        )
    req = SearchRequest(
        setup=setup,
        space=space,
        backend=backend,
        storage=None,
        grid=_GRIDS[path],
        study_name=f"{strategy}-{seed}",
        trials=cap_trials,
        seed=seed,
        sampler=strategy,
        max_asks=asks_per_trial * cap_trials,
        single_objective=strategy != "dstune",
    )
    started = time.perf_counter()
    run_search(req, progress=progress)
    return calls["n"], hit["found"], time.perf_counter() - started


def _step_of(path: Path) -> str:
    import csv

    with path.open() as handle:
        return Counter(r.get("step") or "ppo" for r in csv.DictReader(handle)).most_common(1)[0][0]


def bench(args: argparse.Namespace) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    simulated = ROOT / "scripts" / "tables" / "simulated-opt-1.3b-ppo-8xA100-80G.csv"
    if not args.table and not simulated.exists():
        simulate_table(argparse.Namespace(table=str(simulated)))
    tables = [Path(t) for t in args.table] or sorted((ROOT / "dstune" / "calibration" / "data").glob("*.csv")) + sorted(
        (ROOT / "scripts" / "tables").glob("*.csv")
    )
    pooled: dict[str, list[int]] = {s: [] for s in args.strategies}
    per_table: list[dict[str, list[int]]] = []
    print(
        f"trials until within {WITHIN:.0%} of the table's best (median over {args.seeds} seeds; "
        "a miss counts as the trial cap)"
    )
    print(f"{'table':44} {'rows':>5} {'strategy':10} {'median':>7} {'p25':>5} {'p75':>5} {'found':>6} {'s/run':>6}")
    for path in tables:
        from dstune.search import read_table

        n_rows = len(read_table(path, _step_of(path)))
        cap_trials = min(n_rows, args.max_trials)
        per_table.append({})
        for strategy in args.strategies:
            seeds = args.seeds if strategy != "gp" else min(args.seeds, args.gp_seeds)
            counts, found, times = [], 0, []
            for seed in range(seeds):
                asks = args.gp_asks if strategy == "gp" else args.asks
                n, hit, wall = trials_to_target(path, strategy, seed, cap_trials, asks)
                counts.append(n if hit else cap_trials)
                found += hit
                times.append(wall)
            pooled[strategy].extend(counts)
            per_table[-1][strategy] = counts
            q = np.percentile(counts, [25, 50, 75])
            print(
                f"{path.name[:44]:44} {n_rows:5d} {strategy:10} {q[1]:7.1f} {q[0]:5.1f} {q[2]:5.1f} "
                f"{found:3d}/{seeds:<2d} {statistics.mean(times):6.2f}",
                flush=True,
            )
    print("pooled medians: " + ", ".join(f"{s} {statistics.median(v):.1f}" for s, v in pooled.items() if v))
    real = [r for path, r in zip(tables, per_table) if not _simulated(path) and r.get("tpe") and r.get("dstune")]
    model = [r for path, r in zip(tables, per_table) if _simulated(path) and r.get("tpe") and r.get("dstune")]
    for label, group in (("real (measured) tables", real), ("cost-model tables", model)):
        ratios = [statistics.median(r["dstune"]) / statistics.median(r["tpe"]) for r in group]
        print(f"{label}: per-table ratio (ours / TPE): " + (", ".join(f"{x:.2f}" for x in ratios) or "none"))
    ours = [c for r in real for c in r["dstune"]]
    tpe = [c for r in real for c in r["tpe"]]
    print(
        "ratio_vs_tpe_cost_model_tables: "
        + (
            f"{statistics.median([c for r in model for c in r['dstune']]) / statistics.median([c for r in model for c in r['tpe']]):.2f}"
            if model
            else "n/a"
        )
    )
    print(
        f"ratio_vs_tpe: {statistics.median(ours) / statistics.median(tpe):.2f}"
        if real
        else "ratio_vs_tpe: n/a (no real table)"
    )


def _simulated(path: Path) -> bool:
    """A table the cost model wrote (its device column says SIMULATED), not measured trials."""
    import csv

    with path.open() as handle:
        return any("SIMULATED" in (r.get("device") or "") for r in csv.DictReader(handle))


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
    ben.add_argument("--gp-seeds", type=int, default=20)
    ben.add_argument("--max-trials", type=int, default=150)
    ben.add_argument(
        "--asks",
        type=int,
        default=50,
        help="Optuna asks allowed per counted trial (off-table proposals and repeats are free)",
    )
    ben.add_argument("--gp-asks", type=int, default=5, help="the same for GPSampler, whose asks cost ~1 s each")
    ben.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
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
        bench(args)


if __name__ == "__main__":
    sys.exit(main())
