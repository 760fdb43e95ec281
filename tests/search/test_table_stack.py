"""A replay table's rows ran on their own stack: the replay judges known issues by that stack's verdicts
(its <table>.stack.json), never the host's; and an unexplored job class must beat what is in hand."""

from pathlib import Path

import numpy as np

from dstune.calibration import DATA_DIR
from dstune.catalog import Setup, Stack, load_gpu, load_model, make_cluster
from dstune.search import ReplayBackend, SearchRequest, load_space, read_table, read_table_stack, run_search
from dstune.search._pick import grid_classes
from dstune.search._sampler import SurrogateSampler

from .test_residual import _observation, _surrogate

ROOT = Path(__file__).resolve().parents[2]
TABLE = DATA_DIR / "tiny-opt-ppo-2xcpu-150.csv"


def _setup():
    model = load_model("tiny-opt")
    return Setup(step="ppo", model=model, critic_model=model, cluster=make_cluster(load_gpu("A100-80G"), 2))


def _search(stack=None):
    req = SearchRequest(
        setup=_setup(),
        space=load_space(ROOT / "search_spaces" / "tiny-ppo-table.yaml"),
        backend=ReplayBackend(TABLE, "ppo"),
        storage=None,
        study_name="stack",
        trials=2,
        seed=0,
        sampler="prior",
        stack=stack,
    )
    return run_search(req)


def test_every_shipped_table_records_its_stack():
    for table in sorted(DATA_DIR.glob("*.csv")):
        stack = read_table_stack(table)
        assert stack is not None, table
        assert stack.version("deepspeed"), table


def test_replay_keeps_the_rows_its_own_stack_ran():
    """The 150-row table's Hybrid Engine rows ran (its stack's OPT verdict is 'kernels'): replaying it
    keeps them, whatever the host's transformers; the same replay on a stack where HE is broken drops them."""
    assert ReplayBackend(TABLE, "ppo").stack.he_verdicts["opt"] == "kernels"
    kept = _search()
    assert not any("excluded" in n for n in kept.notes)
    assert kept.grid.columns["enable_hybrid_engine"].any()
    broken = Stack(name="broken", requires={"deepspeed": "==0.19.8"}, he_verdicts={"opt": "broken"})
    dropped = _search(stack=broken)
    assert any("excluded" in n for n in dropped.notes)
    assert not dropped.grid.columns["enable_hybrid_engine"].any()


def test_unexplored_class_is_measured_against_the_incumbent():
    """With only the baseline measured, every other job class's EI reference is the baseline's measured
    throughput, not that class's lowest prediction (which made any unexplored class look promising)."""
    surrogate, setup = _surrogate()
    base = read_table(TABLE, "ppo")[0]
    own = [_observation(base, setup)]
    sampler = SurrogateSampler(surrogate.grid, surrogate, lambda study: (own, set(), None))
    sampler._classes = grid_classes("ppo", surrogate.grid.columns, 2, base.values)[0]
    surrogate.refit(own)
    mu = surrogate.predict_grid().log_sps
    reference = sampler._references(None, mu, np.ones(len(mu), dtype=bool))
    assert len(np.unique(sampler._classes)) > 1
    assert np.allclose(reference, np.log(base.measured.samples_per_s))
