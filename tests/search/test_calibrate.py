"""Calibration recovers constants from data the real cost model generates with perturbed constants."""

import dataclasses

import numpy as np

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.costmodel import DEFAULT_CONSTANTS, estimate_table
from dstune.plan import Context
from dstune.search import SPACES_DIR, Observation, Setup, build_grid, fit_constants, load_space
from dstune.search._calibrate import columns_of, predict
from dstune.search._gp import ResidualGP
from dstune.search._surrogate import Surrogate

TRUTH = dataclasses.replace(
    DEFAULT_CONSTANTS,
    matmul_efficiency_max=0.38,
    hbm_efficiency=0.45,
    decode_overhead_per_layer_s_he=8e-5,
    memory_overhead_fraction=0.2,
    cuda_context_bytes=2.5e9,
)


def _setup():
    return Setup("ppo", load_model("opt-1.3b"), load_model("opt-350m"), make_cluster(load_gpu("A100-80G"), 8))


def _grid(setup):
    space = load_space(SPACES_DIR / "ppo.yaml").with_fixed(
        {"offload_reference_model": False, "unpin_actor_parameters": False}
    )
    return build_grid(space, Context(world_size=8, model=setup.model, critic_model=setup.critic_model))


def _observe(setup, grid, rows):
    values = [grid.values(int(r)) for r in rows]
    table = estimate_table(
        "ppo", columns_of("ppo", values), setup.model, setup.cluster, critic_model=setup.critic_model, constants=TRUTH
    )
    return [
        Observation(v, "ok", float(s), float(m), setup)
        for v, s, m in zip(values, table["samples_per_s"], table["gpu_peak_bytes"])
    ]


def test_fit_reduces_error_on_perturbed_truth():
    setup = _setup()
    grid = _grid(setup)
    rng = np.random.default_rng(0)
    train = _observe(setup, grid, rng.choice(len(grid), 12, replace=False))
    test = _observe(setup, grid, rng.choice(len(grid), 40, replace=False))
    fit = fit_constants(train)
    assert fit.time_rms_after < 0.5 * fit.time_rms_before
    assert fit.memory_rms_after < 0.5 * fit.memory_rms_before

    def held_out(constants):
        sps, mem = predict(test, constants)
        return (
            np.sqrt(np.mean(np.log(np.array([o.samples_per_s for o in test]) / sps) ** 2)),
            np.sqrt(np.mean(np.log(np.array([o.gpu_peak_bytes for o in test]) / mem) ** 2)),
        )

    before, after = held_out(DEFAULT_CONSTANTS), held_out(fit.constants)
    assert after[0] < 0.5 * before[0] and after[1] < 0.5 * before[1]


def test_surrogate_error_falls_as_trials_come_in():
    setup = _setup()
    grid = _grid(setup)
    rng = np.random.default_rng(1)
    rows = rng.choice(len(grid), 60, replace=False)
    obs = _observe(setup, grid, rows)
    test_rows, test_obs = rows[20:], obs[20:]
    measured = np.log([o.samples_per_s for o in test_obs])
    surrogate = Surrogate(grid=grid, setup=setup, cap_bytes=72e9)
    errors = []
    for n in (0, 3, 10, 20):
        surrogate.refit(obs[:n])
        pred = surrogate.predict_grid()
        errors.append(float(np.sqrt(np.mean((pred.log_sps[test_rows] - measured) ** 2))))
    assert errors[-1] < errors[0] * 0.5
    assert errors[2] <= errors[0]


def test_gp_interpolates_with_uncertainty():
    x = np.linspace(0, 1, 8)[:, None]
    y = np.sin(3 * x[:, 0]) * 0.3
    gp = ResidualGP().fit(x, y)
    mean, sd = gp.predict(np.array([[0.5], [3.0]]))
    assert abs(mean[0] - np.sin(1.5) * 0.3) < 0.05
    assert sd[1] > 3 * sd[0]
