"""Known-broken combinations: the data file, and one matcher for a plan dict and a column table."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dstune.catalog import load_model, named_stack
from dstune.doctor import known_issue_mask, known_issue_masks, known_issues, match_known_issues
from dstune.plan import knob_fields, make_plan, plan_to_dict

HE_STACK = named_stack("he")
NATIVE_STACK = dataclasses.replace(HE_STACK, name="native", he_verdicts={**HE_STACK.he_verdicts, "opt": "no kernels"})
BROKEN_STACK = dataclasses.replace(
    HE_STACK,
    name="broken",
    requires={"deepspeed": "==0.19.8", "transformers": "==5.25.0"},
    he_verdicts={**HE_STACK.he_verdicts, "opt": "broken", "llama": "broken"},
)
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


def test_gqa_and_native_generation() -> None:
    """HE tensor parallelism is a hard rule now (he_tp_cannot_shard), not a known issue to switch back on."""
    plan = ppo(actor_zero_stage=3, enable_hybrid_engine=True, inference_tp_size=2)
    assert ids(match_known_issues(plan, load_model("opt-13b"), HE_STACK)) == set()
    assert ids(match_known_issues(plan, load_model("llama-3-8b"), HE_STACK)) == {
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
        newer = dataclasses.replace(NATIVE_STACK, requires={"transformers": "==5.23.0"})
        assert ids(match_known_issues(plan, "opt", newer)) == {"v"}
        unpinned = dataclasses.replace(NATIVE_STACK, requires={"transformers": ">=4.49"})
        assert not match_known_issues(plan, "opt", unpinned), "an unpinned version claims no issue"


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
        assert broken[row] == bool(expected & {"llama_zero3_he_repeated_tokens"})


def test_broken_verdict_makes_every_he_plan_broken_and_only_there() -> None:
    he, plain = ppo(enable_hybrid_engine=True), ppo(enable_hybrid_engine=False)
    hits = match_known_issues(he, load_model("opt-6.7b"), BROKEN_STACK)
    assert "he_broken_stack" in ids(hits) and not match_known_issues(plain, load_model("opt-6.7b"), BROKEN_STACK)
    issue = next(i for i in hits if i.id == "he_broken_stack")
    assert issue.severity == "broken" and "constraints/he.txt" in issue.consequence
    assert "he_broken_stack" not in ids(match_known_issues(he, load_model("opt-6.7b"), HE_STACK))
    unknown = dataclasses.replace(BROKEN_STACK, he_verdicts={})
    assert "he_broken_stack" not in ids(match_known_issues(he, load_model("opt-6.7b"), unknown))
    assert "he_broken_stack" not in ids(match_known_issues(he, "qwen2", BROKEN_STACK))


def test_recorded_verdicts_name_their_stacks_and_evidence() -> None:
    issue = next(i for i in known_issues() if i.id == "he_broken_stack")
    by_transformers = {o["stack"]["transformers"]: o for o in issue.observed}
    assert by_transformers["5.25.0"]["verdicts"]["opt"] == "broken"
    assert by_transformers["4.48.3"]["verdicts"]["opt"] == "kernels"
    for seen in issue.observed:
        assert seen["stack"]["deepspeed"] and seen["evidence"]
        assert set(seen["verdicts"]) == {"opt", "llama", "qwen2", "mistral"}
