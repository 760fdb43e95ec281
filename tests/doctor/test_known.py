"""Known-broken combinations: the data file, and one matcher for a plan dict and a column table."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dstune.catalog import load_model
from dstune.doctor import Stack, known_issue_mask, known_issue_masks, known_issues, match_known_issues
from dstune.plan import knob_fields, make_plan, plan_to_dict

HE_STACK = Stack(
    versions={"deepspeed": "0.19.8", "transformers": "4.48.3"},
    he_kernels={"opt": True, "llama": True, "qwen2": False, "mistral": False},
)
NATIVE_STACK = dataclasses.replace(HE_STACK, he_kernels={**HE_STACK.he_kernels, "opt": False})
DEEPSPEED_ONLY_KNOBS = {"enable_cuda_graph"}
"""Hybrid Engine options DeepSpeed has and DeepSpeed-Chat does not expose as flags."""


def ppo(**values):
    return plan_to_dict(make_plan("ppo", values))


def ids(issues) -> set[str]:
    return {issue.id for issue in issues}


def test_every_entry_is_sourced_and_names_real_knobs() -> None:
    knobs = {f.name for step in ("sft", "rm", "ppo") for f in knob_fields(step)} | DEEPSPEED_ONLY_KNOBS
    assert known_issues()
    for issue in known_issues():
        assert issue.sources and issue.consequence and issue.severity in ("broken", "risky")
        assert {c.knob for c in issue.when} <= knobs, issue.id


def test_llama2_zero3_he_hits_the_repeated_token_reports() -> None:
    hits = match_known_issues(ppo(actor_zero_stage=3, enable_hybrid_engine=True), load_model("llama-2-7b"), HE_STACK)
    assert ids(hits) == {"llama_zero3_he_repeated_tokens"}
    assert "deepspeedai/DeepSpeedExamples#864" in hits[0].sources
    assert not match_known_issues(
        ppo(actor_zero_stage=2, enable_hybrid_engine=True), load_model("llama-2-7b"), HE_STACK
    )


def test_tp_with_zero3_and_gqa_and_native_generation() -> None:
    plan = ppo(actor_zero_stage=3, enable_hybrid_engine=True, inference_tp_size=2)
    assert ids(match_known_issues(plan, load_model("opt-13b"), HE_STACK)) == {"he_tp_zero3_size_mismatch"}
    assert ids(match_known_issues(plan, load_model("llama-3-8b"), HE_STACK)) == {
        "he_tp_zero3_size_mismatch",
        "llama_zero3_he_repeated_tokens",
        "llama_gqa_he_container",
    }
    # no containers, no kernel bugs: only the native-generate note
    assert ids(match_known_issues(plan, load_model("opt-13b"), NATIVE_STACK)) == {"he_without_kernels"}
    assert ids(match_known_issues(plan, "qwen2", HE_STACK)) == {"he_without_kernels"}


def test_sft_plans_and_missing_knobs_never_match() -> None:
    sft = plan_to_dict(make_plan("sft", {"zero_stage": 3}))
    assert match_known_issues(sft, "llama", HE_STACK) == ()


def test_version_conditions() -> None:
    issue = dataclasses.replace(known_issues()[0], id="v", versions={"transformers": ">=4.49"})
    from dstune.doctor import _known

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_known, "known_issues", lambda: (issue,))
        plan = ppo(enable_hybrid_engine=True)
        assert not match_known_issues(plan, "opt", NATIVE_STACK)
        newer = dataclasses.replace(NATIVE_STACK, versions={"transformers": "5.23.0"})
        assert ids(match_known_issues(plan, "opt", newer)) == {"v"}


def test_column_mask_equals_the_plan_matcher_row_by_row() -> None:
    rng = np.random.default_rng(0)
    n = 200
    columns = {
        "actor_zero_stage": rng.integers(0, 4, n),
        "enable_hybrid_engine": rng.random(n) < 0.5,
        "inference_tp_size": rng.choice([1, 2, 4], n),
        "release_inference_cache": rng.random(n) < 0.5,
    }
    model = load_model("llama-2-13b")
    masks = known_issue_masks(columns, model, HE_STACK)
    broken = known_issue_mask(columns, model, HE_STACK)
    for row in range(n):
        plan = {k: v[row].item() for k, v in columns.items()}
        expected = ids(match_known_issues(plan, model, HE_STACK))
        assert {i for i, m in masks.items() if m[row]} == expected
        assert broken[row] == bool(expected & {"llama_zero3_he_repeated_tokens", "he_tp_zero3_size_mismatch"})
