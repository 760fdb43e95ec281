"""Default searches of every step keep the baseline's job: a pick changes system knobs only (issue 18 part 3)."""

import pytest

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.plan import job_of, make_plan, plan_to_dict
from dstune.search import SPACES_DIR, SearchRequest, Setup, SimulateBackend, load_space, run_search

CASES = [
    ("sft", "llama-2-7b", None, 8),
    ("sft", "opt-13b", None, 8),
    ("rm", "opt-350m", None, 8),
    ("dpo", "llama-2-7b", None, 8),
    ("ppo", "opt-6.7b", "opt-350m", 8),
]


@pytest.mark.parametrize(("step", "model", "critic", "gpus"), CASES)
def test_every_trial_and_the_pick_train_the_baselines_job(tmp_path, step, model, critic, gpus):
    setup = Setup(step, load_model(model), critic and load_model(critic), make_cluster(load_gpu("A100-80G"), gpus))
    backend = SimulateBackend(model=setup.model, critic_model=setup.critic_model, cluster=setup.cluster, cap_bytes=72e9)
    result = run_search(
        SearchRequest(
            setup=setup,
            space=load_space(SPACES_DIR / f"{step}.yaml"),
            backend=backend,
            storage=f"sqlite:///{tmp_path}/study.db",
            study_name="kept",
            trials=6,
            seed=0,
        )
    )
    want = job_of(step, plan_to_dict(result.baseline.plan), gpus)
    assert result.pick is not None
    pick = job_of(step, plan_to_dict(make_plan(step, result.pick.values)), gpus)
    assert pick == want  # trained parameters (LoRA), samples per optimizer step, lengths, dtype
    assert {r.job for r in result.rows if r.status.value == "ok"} == {result.baseline_row.job}


@pytest.mark.parametrize("step", ["sft", "rm", "dpo"])
def test_explore_lora_widens_the_job(step):
    space = load_space(SPACES_DIR / f"{step}.yaml")
    assert "lora_dim" not in space.knobs and "lora_dim" in space.widen(["lora"]).knobs
