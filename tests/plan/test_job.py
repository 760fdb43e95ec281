"""A plan's training job: what is trained and on how much data, independent of how it runs."""

from __future__ import annotations

import numpy as np

from dstune.costmodel import plans_to_columns
from dstune.plan import (
    batch_columns,
    job_codes,
    job_knobs,
    job_of,
    make_plan,
    plan_to_dict,
    redundant_rows,
    step_strategy,
)


def _ppo(**knobs):
    return plan_to_dict(make_plan("ppo", knobs))


def test_label_names_what_is_trained_and_the_batch() -> None:
    base = _ppo(actor_zero_stage=3, per_device_generation_batch_size=4, per_device_training_batch_size=4)
    assert (
        job_of("ppo", base, 8).label()
        == "full fine-tuning, 32 prompts/iteration, 32 samples/update, 256+256 tokens, fp16"
    )
    lora = _ppo(actor_lora_dim=8, only_optimize_lora=True, per_device_generation_batch_size=64)
    assert job_of("ppo", lora, 8).label().startswith("actor LoRA r=8 only, 512 prompts/iteration, 128 samples/update")
    sft = plan_to_dict(make_plan("sft", {"lora_dim": 128, "gradient_accumulation_steps": 2}))
    assert job_of("sft", sft, 4).label() == "LoRA r=128 + base weights, 128 samples/step, 512 tokens, fp16"
    rm = plan_to_dict(make_plan("rm", {}))
    assert "pairs/step" in job_of("rm", rm, 1).label()


def test_system_knobs_and_batch_splits_keep_the_job() -> None:
    a = _ppo(actor_zero_stage=3, per_device_generation_batch_size=4, per_device_training_batch_size=4)
    b = _ppo(
        actor_zero_stage=2,
        offload=True,
        enable_hybrid_engine=True,
        per_device_generation_batch_size=2,
        generation_batches=2,
        per_device_training_batch_size=2,
        gradient_accumulation_steps=2,
    )
    assert job_of("ppo", a, 8) == job_of("ppo", b, 8) and not job_of("ppo", a, 8).differences(job_of("ppo", b, 8))
    c = _ppo(actor_zero_stage=3, actor_lora_dim=8, per_device_generation_batch_size=4, per_device_training_batch_size=4)
    assert job_of("ppo", c, 8) != job_of("ppo", a, 8)
    assert job_of("ppo", c, 8).differences(job_of("ppo", a, 8)) == ["actor_lora_dim 0 -> 8"]
    assert job_of("ppo", a, 16) != job_of("ppo", a, 8)  # same per-GPU batch, twice the prompts


def test_minidataset_never_trains_on_more_than_one_generation_batch() -> None:
    """DeepSpeed-Chat's MiniDataset cuts each generation batch: a larger training batch runs as it."""
    big = _ppo(per_device_generation_batch_size=4, per_device_training_batch_size=16)
    assert job_of("ppo", big, 2).batches == {"prompts_per_iteration": 8, "samples_per_update": 8}


def test_vectorised_batches_and_codes_match_one_by_one() -> None:
    plans = [
        make_plan(
            "ppo",
            {
                "per_device_generation_batch_size": g,
                "generation_batches": n,
                "per_device_training_batch_size": t,
                "actor_lora_dim": r,
            },
        )
        for g in (1, 2, 4)
        for n in (1, 2)
        for t in (1, 2)
        for r in (0, 8)
    ]
    cols = plans_to_columns(plans)
    batches = batch_columns("ppo", cols, 4)
    ids, _ = job_codes("ppo", cols, 4)
    jobs = [job_of("ppo", plan_to_dict(p), 4) for p in plans]
    for i, job in enumerate(jobs):
        assert {k: int(v[i]) for k, v in batches.items()} == job.batches
        for j, other in enumerate(jobs):
            assert (ids[i] == ids[j]) == (job == other)
    assert "dtype" in job_knobs("ppo") and "actor_zero_stage" not in job_knobs("ppo")


def test_inert_knobs_are_only_kept_at_their_default() -> None:
    plans = [
        make_plan("ppo", {"enable_hybrid_engine": he, "release_inference_cache": rel, "actor_zero_stage": z})
        for he in (False, True)
        for rel in (False, True)
        for z in (2, 3)
    ]
    cols = plans_to_columns(plans)
    same = redundant_rows("ppo", cols, ("enable_hybrid_engine", "release_inference_cache", "actor_zero_stage"))
    kept = [p for p, s in zip(plans, same) if not s]
    assert all(p.enable_hybrid_engine or not p.release_inference_cache for p in kept)
    assert len(kept) == 6
    assert not redundant_rows("ppo", cols, ("actor_zero_stage",)).any()  # a user-fixed value is kept
    assert {rule.knob for rule in step_strategy("ppo").inert()} >= {"inference_tp_size", "unpin_actor_parameters"}
    assert isinstance(same, np.ndarray)
