"""DeepSpeed-Chat shipped settings as the baseline: valid for every catalog model at 1, 8 and 64 GPUs."""

import pytest

from dstune.catalog import list_models, load_model
from dstune.plan import Context, violations
from dstune.search import baseline_plan


def _critic(model):
    return load_model("opt-350m") if model.family == "opt" else model


@pytest.mark.parametrize("model", [m.name for m in list_models()])
@pytest.mark.parametrize("gpus", [1, 8, 64])
@pytest.mark.parametrize("step", ["sft", "rm", "ppo"])
def test_baseline_is_valid(model, gpus, step):
    spec = load_model(model)
    critic = _critic(spec) if step == "ppo" else None
    base = baseline_plan(step, spec, gpus, critic_model=critic)
    assert violations(base.plan, Context(world_size=gpus, model=spec, critic_model=critic)) == []
    assert base.script.startswith("DeepSpeed-Chat training/step")


def test_opt_6_7b_single_node_matches_run_6_7b_sh():
    base = baseline_plan("ppo", load_model("opt-6.7b"), 8, critic_model=load_model("opt-350m"))
    p = base.plan
    assert (p.actor_zero_stage, p.critic_zero_stage) == (3, 3)
    assert (p.per_device_generation_batch_size, p.per_device_training_batch_size) == (4, 4)
    assert p.enable_hybrid_engine and p.actor_gradient_checkpointing and not p.critic_gradient_checkpointing
    assert base.script.endswith("opt/single_node/run_6.7b.sh")


def test_opt_66b_tp_is_fitted_to_world_size():
    base = baseline_plan("ppo", load_model("opt-66b"), 4, critic_model=load_model("opt-350m"))
    assert base.plan.inference_tp_size == 4 and base.plan.tp_gather_partition_size == 4
    assert any("inference_tp_size 8 -> 4" in a for a in base.adjustments)


def test_single_gpu_and_llama():
    one = baseline_plan("ppo", load_model("opt-1.3b"), 1, critic_model=load_model("opt-350m")).plan
    assert (one.actor_zero_stage, one.gradient_accumulation_steps, one.actor_lora_dim) == (0, 2, 128)
    llama = baseline_plan("ppo", load_model("llama-2-7b"), 8, critic_model=load_model("llama-2-7b")).plan
    assert llama.offload_reference_model and llama.per_device_generation_batch_size == 1
    assert llama.actor_lora_module_name == "layers."
    sft = baseline_plan("sft", load_model("llama-2-13b"), 8).plan
    assert sft.lora_module_name == "layers." and sft.zero_stage == 3


def test_workload_overlays_the_script():
    base = baseline_plan(
        "ppo",
        load_model("tiny-opt"),
        2,
        critic_model=load_model("tiny-opt"),
        workload={"max_prompt_seq_len": 16, "max_answer_seq_len": 16, "dtype": "bf16"},
    )
    assert base.plan.max_prompt_seq_len == 16 and base.plan.dtype == "bf16"


@pytest.fixture(scope="module")
def opt_66b_at_64(tmp_path_factory):
    """`search --model opt-66b --gpus 64`: run_66b.sh's inference_tp_size 8 at ZeRO-3 is a known-broken combination."""
    import json

    from dstune.cli import main

    out = tmp_path_factory.mktemp("opt66b")
    assert main(["search", "--model", "opt-66b", "--gpus", "64", "--out", str(out)]) == 0
    return out, json.loads((out / "plan.json").read_text())


def test_broken_baseline_is_never_the_exported_pick(opt_66b_at_64):
    from dstune.doctor import match_known_issues

    _, meta = opt_66b_at_64
    assert meta["baseline"]["plan"]["inference_tp_size"] == 8
    assert meta["plan"] != meta["baseline"]["plan"]
    hit = [i for i in match_known_issues(meta["plan"], load_model("opt-66b")) if i.severity == "broken"]
    assert hit == []


def test_broken_baseline_is_said_in_plan_report_and_script(opt_66b_at_64):
    out, meta = opt_66b_at_64
    issues = meta["baseline"]["known_issues"]
    assert meta["baseline"]["broken_on_this_stack"] and [i["id"] for i in issues] == ["he_tp_zero3_size_mismatch"]
    assert meta["speedup_over_baseline"] is not None  # against the baseline as shipped
    script = (out / "run_step3.sh").read_text().splitlines()
    header = script[: script.index("set -euo pipefail")]
    assert any("he_tp_zero3_size_mismatch" in line and line.startswith("# ") for line in header)
    for report in ("report.md", "report.html"):
        text = (out / report).read_text()
        assert "he_tp_zero3_size_mismatch" in text and "broken on this stack" in text


def test_mark_keeps_the_broken_baseline_pickable(tmp_path):
    import json

    from dstune.cli import main

    args = ["search", "--model", "opt-66b", "--gpus", "64", "--known-issues", "mark", "--out", str(tmp_path)]
    assert main(args) == 0
    meta = json.loads((tmp_path / "plan.json").read_text())
    assert meta["baseline"]["broken_on_this_stack"]
    assert any("mark keeps broken plans pickable" in n for n in meta["notes"])
