"""The OpenRLHF paper's runs (Table 3 placements, Table 5 seconds, issue 28): weight sync priced by the bytes
broadcast_to_vllm sends, the two fitted constants, and their leave-one-out errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.costmodel._facts import model_facts
from dstune.frameworks.openrlhf import broken_checks, paper_rows
from dstune.frameworks.openrlhf._cost import estimate_openrlhf
from dstune.frameworks.openrlhf._cost_columns import columns, trained_params
from dstune.frameworks.openrlhf._cost_constants import DEFAULT_OPENRLHF_CONSTANTS, backing
from dstune.frameworks.openrlhf._cost_paper import fit_paper, paper_plan, predict
from dstune.frameworks.openrlhf._cost_time import sync_tensors

WITHIN = 1.5


@pytest.fixture(scope="module")
def fits() -> dict:
    return fit_paper()


def _off(ratio: float) -> float:
    return max(ratio, 1.0 / ratio)


def test_rows_are_data_with_their_caveats() -> None:
    source, rows = paper_rows()
    assert [r.model for r in rows] == ["llama-2-7b", "llama-2-13b", "llama-2-70b"]
    assert [r.weight_sync_s for r in rows] == [4.32, 10.03, 111.65]
    assert set(source.fits) == {"train", "weight sync"} and source.in_fit
    assert any("micro-batches" in c for c in source.caveats) and any("lengths" in c for c in source.caveats)
    assert "not re-read" in source.read
    for row in rows:
        assert not broken_checks(paper_plan(row), row.gpus, 8)


def test_defaults_are_the_fit(fits: dict) -> None:
    for f in fits.values():
        assert f.fitted == pytest.approx(f.default, rel=0.02), f
        assert len(f.loo_ratios) == 3 and f.loo_ratios != f.ratios


def test_training_within_1_5x(fits: dict) -> None:
    assert all(_off(r) <= WITHIN for r in fits["train"].ratios), fits["train"].ratios


def test_weight_sync_within_1_5x_but_70b_which_no_bytes_model_reaches(fits: dict) -> None:
    """7B and 13B within 1.5x (the old 1 ms per tensor gave 0.08 and 0.21). 70B stays out, and the evidence
    says why: on 13B's own placement it takes more times 13B's seconds than it has times the bytes or the
    tensors, which no non-negative per-tensor + per-byte model can follow."""
    _, rows = paper_rows()
    r7, r13, r70 = fits["weight sync"].ratios
    assert _off(r7) <= WITHIN and _off(r13) <= WITHIN and _off(r70) > WITHIN
    small, big = rows[1], rows[2]
    assert (small.actor, small.vllm_engines, small.vllm_tp) == (big.actor, big.vllm_engines, big.vllm_tp)
    cols = columns([paper_plan(small), paper_plan(big)])
    f13, f70 = model_facts(load_model(small.model), "lm"), model_facts(load_model(big.model), "lm")
    bytes_ratio = float(trained_params(f70, cols)[0][1] / trained_params(f13, cols)[0][0])
    tensor_ratio = float(sync_tensors(f70, cols)[1] / sync_tensors(f13, cols)[0])
    assert big.weight_sync_s / small.weight_sync_s > 2.0 * max(bytes_ratio, tensor_ratio)


def test_weight_sync_parts_follow_broadcast_to_vllm() -> None:
    """Bytes at the fitted rate, a Ray round trip per tensor, a ZeRO-3 gather per tensor; Adam offload leaves
    the 16-bit partitions on the GPU (get_ds_train_config offload=False), so it adds nothing."""
    _, rows = paper_rows()
    row = rows[1]
    parts = predict(row)["phase_parts_s"]
    assert parts["weight sync: ZeRO-3 gather"] > 0 and parts["weight sync: Ray calls"] > 0
    spec = load_model(row.model)
    cluster = make_cluster(load_gpu("A100-80G"), row.gpus)
    plans = [paper_plan(row), paper_plan(dataclasses.replace(row, adam_offload=False))]
    table = estimate_openrlhf(plans, spec, spec, cluster)
    assert table.phases["weight sync"][0] == pytest.approx(table.phases["weight sync"][1])
    faster = dataclasses.replace(DEFAULT_OPENRLHF_CONSTANTS, weight_sync_bytes_per_s=2.0 * 2.25e9)
    doubled = estimate_openrlhf(plans[:1], spec, spec, cluster, oc=faster).parts["weight sync: bytes"]
    assert np.allclose(2.0 * doubled, table.parts["weight sync: bytes"][:1])


def test_basis_names_what_is_fitted_and_what_stays_prior() -> None:
    text = backing()
    assert "train, weight sync fitted to 3 rows" in text and "every other OpenRLHF constant is a prior" in text
