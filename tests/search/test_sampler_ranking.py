"""The sampler keeps the cost model's ranking as its prior and walks down it as measurements correct it:
it does not detour to plans whose only promise is that nothing like them was measured, and a job class
measured below the best plan in hand does not draw trials unless the study was asked for a pick per job."""

import dataclasses
from pathlib import Path

import numpy as np

from dstune.calibration import DATA_DIR
from dstune.catalog import Setup, load_gpu, load_model, make_cluster
from dstune.plan import Context
from dstune.search import Observation, Surrogate, build_grid, load_space, read_table
from dstune.search._pick import grid_classes
from dstune.search._sampler import SurrogateSampler, log_expected_improvement
from dstune.search._space import plan_key

from .test_residual import _observation, _surrogate

ROOT = Path(__file__).resolve().parents[2]
PPO_TABLE = DATA_DIR / "tiny-opt-ppo-2xcpu-150.csv"
SFT_TABLE = DATA_DIR / "tiny-opt-sft-1xcpu.csv"


def _two_classes():
    """The 150-row table's baseline (full fine-tuning) and a LoRA row of it measured far below it."""
    surrogate, setup = _surrogate()
    rows = read_table(PPO_TABLE, "ppo")
    base = rows[0]
    lora = next(
        r for r in rows if r.status == "ok" and r.values["actor_lora_dim"] == 8 and r.measured.samples_per_s < 30
    )
    assert lora.measured.samples_per_s < 0.5 * base.measured.samples_per_s
    own = [_observation(base, setup), _observation(lora, setup)]
    surrogate.refit(own)
    return surrogate, own, base, lora


def test_a_class_measured_below_the_incumbent_is_measured_against_the_incumbent():
    surrogate, own, base, _ = _two_classes()
    sampler = SurrogateSampler(surrogate.grid, surrogate, lambda study: (own, set(), None))
    sampler._classes = grid_classes("ppo", surrogate.grid.columns, 2, base.values)[0]
    mu = surrogate.predict_grid().log_sps
    reference = sampler._references(None, mu, np.ones(len(mu), dtype=bool))
    assert np.allclose(reference, np.log(base.measured.samples_per_s))


def test_under_explore_each_measured_class_keeps_its_own_best():
    surrogate, own, base, lora = _two_classes()
    space = dataclasses.replace(surrogate.grid.space, explored=("lora",))
    grid = dataclasses.replace(surrogate.grid, space=space)
    sampler = SurrogateSampler(grid, surrogate, lambda study: (own, set(), None))
    classes = sampler._classes = grid_classes("ppo", grid.columns, 2, base.values)[0]
    mu = surrogate.predict_grid().log_sps
    reference = sampler._references(None, mu, np.ones(len(mu), dtype=bool))
    lora_class = classes[grid.find(lora.values)]
    assert np.allclose(reference[classes == lora_class], np.log(lora.measured.samples_per_s))
    assert np.allclose(reference[classes != lora_class], np.log(base.measured.samples_per_s))


def _sft():
    model = load_model("tiny-opt")
    setup = Setup(step="sft", model=model, critic_model=None, cluster=make_cluster(load_gpu("A100-80G"), 1))
    space = load_space(ROOT / "search_spaces" / "tiny-sft-table.yaml")
    grid = build_grid(space, Context(world_size=1, model=model, critic_model=None))
    return Surrogate(grid=grid, setup=setup, cap_bytes=setup.cluster.gpu.memory_bytes * 0.9), setup


def test_after_one_measurement_the_proposal_is_the_best_corrected_prediction():
    """SFT table: one measured plan (ZeRO-2, LoRA 8, micro-batch 8). The next proposal is the unmeasured
    plan with the best calibrated prediction among those sure to fit, not a plan that differs from the
    measured one in more knob values (the knob residual's spread as a bonus proposed the baseline-like
    ZeRO-0, LoRA-128-sized plan predicted below it)."""
    surrogate, setup = _sft()
    row = next(
        r
        for r in read_table(SFT_TABLE, "sft")
        if r.status == "ok"
        and (r.values["zero_stage"], r.values["lora_dim"], r.values["per_device_train_batch_size"]) == (2, 8, 8)
        and not r.values["offload"]
        and not r.values["gradient_checkpointing"]
    )
    measured = surrogate.grid.find(row.values)
    assert measured is not None
    own = [Observation(row.values, "ok", row.measured.samples_per_s, row.measured.gpu_peak_bytes, setup)]
    key = dict(surrogate.grid.values(measured))
    sampler = SurrogateSampler(surrogate.grid, surrogate, lambda study: (own, {plan_key(key)}, None))
    proposed = sampler.propose(None)
    pred = surrogate.predict_grid()
    sure = pred.p_fit > 0.99
    sure[measured] = False
    assert proposed is not None and sure[proposed]
    assert pred.log_sps[proposed] == np.max(pred.log_sps[sure])


def test_log_expected_improvement_is_exact_and_finite_far_below_the_incumbent():
    from scipy.stats import norm

    z = np.array([-8.0, -2.0, 0.0, 0.5, 3.0])
    direct = np.log(0.2 * (z * norm.cdf(z) + norm.pdf(z)))
    assert np.allclose(log_expected_improvement(0.2 * z, np.full(5, 0.2), 0.0), direct)
    far = log_expected_improvement(np.array([-20.0, -10.0]), np.full(2, 0.05), 0.0)  # EI itself is 0.0 here
    assert np.all(np.isfinite(far)) and far[0] < far[1]


def test_when_every_plan_left_is_far_below_the_incumbent_the_best_prediction_is_still_proposed():
    """The 100 fastest rows of the 150-row table measured, the other rows left: the shared spread is narrow
    and every plan left sits many spreads below the incumbent, where EI is under the tie-break's 1e-12 and the
    proposal used to be a random plan."""
    surrogate, setup = _surrogate()
    grid = surrogate.grid
    rows = sorted(
        (r for r in read_table(PPO_TABLE, "ppo") if r.status == "ok"), key=lambda r: -r.measured.samples_per_s
    )
    measured, rest = rows[:100], rows[100:]
    own = [_observation(r, setup) for r in measured]
    seen = {plan_key(dict(grid.values(grid.find(r.values)))) for r in measured}
    allowed = np.zeros(len(grid), dtype=bool)
    allowed[[grid.find(r.values) for r in rest]] = True
    sampler = SurrogateSampler(grid, surrogate, lambda study: (own, seen, None), allowed=allowed, seed=0)
    proposed = sampler.propose(None)
    pred = surrogate.predict_grid()
    left = allowed & (pred.p_fit > 0.99)
    assert np.max(pred.log_sps[left]) - np.log(measured[0].measured.samples_per_s) < -8 * pred.sd_shared
    assert proposed is not None and pred.log_sps[proposed] == np.max(pred.log_sps[left])
