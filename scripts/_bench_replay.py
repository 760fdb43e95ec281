"""Replaying recorded tables for scripts/bench_search.py: each table's setup, the grid that spans it,
the stack its rows ran on, and one strategy's trials until it measures a plan within 2% of the best
row it can propose."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WITHIN = 0.02
_REPLAYS: dict = {}


def _setup(model: str, gpus: int, gpu_type: str, step: str, critic: str | None):
    from dstune.catalog import default_critic, load_gpu, load_model, make_cluster
    from dstune.plan import step_strategy
    from dstune.search import Setup

    spec = load_model(model)
    uses_critic = step_strategy(step).uses_critic
    critic_spec = (load_model(critic) if critic else default_critic(spec)) if uses_critic else None
    return Setup(step=step, model=spec, critic_model=critic_spec, cluster=make_cluster(load_gpu(gpu_type), gpus))


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


@dataclasses.dataclass
class Replay:
    """One table as a bench sees it: its setup, the grid spanning it, and the stack its rows ran on."""

    path: Path
    setup: object
    rows: list
    grid: object
    stack: object
    reachable: np.ndarray
    """Grid rows the table holds that a strategy can propose (known issues judged by the table's stack)."""

    @property
    def known_issues(self) -> str:
        return "exclude" if self.stack is not None else "off"


def load_replay(path: Path) -> Replay:
    from dstune.doctor import known_issue_mask
    from dstune.plan import Context
    from dstune.search import ReplayBackend, build_grid, read_table, read_table_stack

    if path in _REPLAYS:
        return _REPLAYS[path]
    rows = read_table(path, _step_of(path))
    extra = rows[0].extra
    setup = _setup(extra["model"], int(extra["gpus"]), extra["gpu_type"], _step_of(path), extra.get("critic_model"))
    space = _space_of_table(rows, setup.step, path)
    grid = build_grid(
        space, Context(world_size=setup.cluster.world_size, model=setup.model, critic_model=setup.critic_model)
    )
    stack = read_table_stack(path)
    reachable = ReplayBackend(path, setup.step).allowed_rows(grid.columns)
    if stack is not None:
        reachable &= ~known_issue_mask(grid.columns, setup.model, stack)
    _REPLAYS[path] = Replay(path, setup, rows, grid, stack, reachable)
    return _REPLAYS[path]


def _bootstrap(backend, seed: int) -> None:
    """Seed 0 replays the whole table; seed s > 0 a bootstrap of its rows (drawn with replacement, so
    about a third of the plans are missing and the best reachable plan moves). Row 0, the baseline
    every strategy starts from, is always kept."""
    if seed == 0:
        return
    from dstune.search._backends import plan_key

    rng = np.random.default_rng(seed)
    keep = {0, *rng.integers(0, len(backend.rows), len(backend.rows)).tolist()}
    backend.rows = [r for i, r in enumerate(backend.rows) if i in keep]
    backend._by_key = {plan_key(r.values): r for r in reversed(backend.rows)}


def _target(replay: Replay, backend, cap: float) -> float:
    """The best measured throughput among rows a strategy can propose, under the memory cap."""
    present = backend.allowed_rows(replay.grid.columns) & replay.reachable
    best = 0.0
    for i in np.flatnonzero(present):
        row = backend.lookup(replay.grid.values(int(i)))
        if row.status == "ok" and row.measured and (row.measured.gpu_peak_bytes or 0) <= cap:
            best = max(best, row.measured.samples_per_s)
    return best


def trials_to_target(
    path: Path, strategy: str, seed: int, cap_trials: int, asks_per_trial: int = 50
) -> tuple[int, bool, float]:
    """Backend calls until a plan within 2% of the best reachable row is measured."""
    from dstune.search import ReplayBackend, SearchRequest, StopSearch, run_search

    replay = load_replay(path)
    setup = replay.setup
    cap = setup.cluster.gpu.memory_bytes * 0.9
    backend = ReplayBackend(path, setup.step)
    _bootstrap(backend, seed)
    best = _target(replay, backend, cap)
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

    req = SearchRequest(
        setup=setup,
        space=replay.grid.space,
        backend=backend,
        storage=None,
        grid=replay.grid,
        study_name=f"{strategy}-{seed}",
        trials=cap_trials,
        seed=seed,
        sampler=strategy,
        max_asks=asks_per_trial * cap_trials,
        single_objective=strategy not in ("dstune", "prior"),
        known_issues=replay.known_issues,
        stack=replay.stack,
    )
    started = time.perf_counter()
    run_search(req, progress=progress)
    return calls["n"], hit["found"], time.perf_counter() - started


def prior_rank_of_best(path: Path) -> tuple[int, int]:
    """Where the cost model's first ranking (no measurement) puts the table's best reachable row:
    its rank among the reachable rows, and how many there are."""
    from dstune.search import ReplayBackend, Surrogate

    replay = load_replay(path)
    cap = replay.setup.cluster.gpu.memory_bytes * 0.9
    backend = ReplayBackend(path, replay.setup.step)
    best = _target(replay, backend, cap)
    pred = Surrogate(grid=replay.grid, setup=replay.setup, cap_bytes=cap).predict_grid()
    rows = np.flatnonzero(replay.reachable)
    order = rows[np.argsort(-(pred.log_sps[rows] + np.log(np.maximum(pred.p_fit[rows], 1e-12))), kind="stable")]
    for rank, i in enumerate(order, 1):
        row = backend.lookup(replay.grid.values(int(i)))
        if row.status == "ok" and row.measured and row.measured.samples_per_s >= best:
            return rank, len(rows)
    return len(rows), len(rows)


def _step_of(path: Path) -> str:
    with path.open() as handle:
        return Counter(r.get("step") or "ppo" for r in csv.DictReader(handle)).most_common(1)[0][0]


def _simulated(path: Path) -> bool:
    """A table the cost model wrote (its device column says SIMULATED), not measured trials."""
    with path.open() as handle:
        return any("SIMULATED" in (r.get("device") or "") for r in csv.DictReader(handle))


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
