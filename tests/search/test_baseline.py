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
    ctx = Context(world_size=gpus, model=spec, critic_model=critic)
    assert violations(base.plan, ctx, stack=False) == []
    # only the installed DeepSpeed's limits may be broken by a shipped script, and the baseline says which
    assert [f"{b.rule}: {b.message}" for b in base.cannot_run] == violations(base.plan, ctx)
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
    assert [b.rule for b in base.cannot_run] == ["he_tp_cannot_shard"]  # the baseline still, labelled


def test_tp_rule_reads_deepspeeds_own_code():
    """The rule's facts, read from the installed DeepSpeed: slicing needs an mpu, only input_ids are gathered."""
    import inspect

    from deepspeed.runtime.hybrid_engine import DeepSpeedHybridEngine

    generate = inspect.getsource(DeepSpeedHybridEngine.generate)
    guard = generate.index("if self.mpu is not None:")
    assert generate.index("apply_tensor_parallelism", guard) - guard < 200
    assert "all_gather_into_tensor(output, input_cont" in generate and "attention_mask" not in generate
    container = inspect.getsource(DeepSpeedHybridEngine.new_inference_container)
    assert "set_tensor_parallel_config(self._config.hybrid_engine.inference_tp_size" in container


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
    """`search --model opt-66b --gpus 64 --stack he`: run_66b.sh's inference_tp_size 8 breaks DeepSpeed 0.19.8's
    he_tp_cannot_shard rule (DeepSpeed-Chat passes no mpu, so the Hybrid Engine never slices the weights)."""
    import json

    from dstune.cli import main

    out = tmp_path_factory.mktemp("opt66b")
    assert main(["search", "--model", "opt-66b", "--gpus", "64", "--stack", "he", "--out", str(out)]) == 0
    return out, json.loads((out / "plan.json").read_text())


def test_broken_baseline_is_never_the_exported_pick(opt_66b_at_64):
    from dstune.catalog import named_stack
    from dstune.doctor import match_known_issues
    from dstune.plan import Context, make_plan, violations

    _, meta = opt_66b_at_64
    assert meta["baseline"]["plan"]["inference_tp_size"] == 8
    assert meta["plan"] != meta["baseline"]["plan"] and meta["plan"]["inference_tp_size"] == 1
    hit = [
        i for i in match_known_issues(meta["plan"], load_model("opt-66b"), named_stack("he")) if i.severity == "broken"
    ]
    assert hit == []
    ctx = Context(64, model=load_model("opt-66b"), critic_model=load_model("opt-350m"), stack=named_stack("he"))
    assert violations(make_plan("ppo", meta["plan"]), ctx) == []


def test_a_broken_he_stack_hands_out_no_hybrid_engine(opt_66b_at_64, tmp_path):
    """On he (OPT's HE kernels hold) the baseline hits only the TP rule. On a stack where the
    OPT verdict is broken (--stack local here, transformers 5.25), the pick never enables the Hybrid Engine and
    the baseline (run_66b.sh enables it) is labelled with he_broken_stack as well as the TP rule."""
    import json

    from dstune.cli import main
    from dstune.doctor import he_status

    _, meta = opt_66b_at_64
    assert meta["stack"]["name"] == "he" and meta["stack"]["he_verdicts"]["opt"] == "kernels"
    assert [i["id"] for i in meta["baseline"]["known_issues"]] == ["he_tp_cannot_shard"]
    if he_status("opt").verdict != "broken":
        pytest.skip("this machine's OPT verdict is not broken")
    args = ["search", "--model", "opt-66b", "--gpus", "64", "--stack", "local", "--out", str(tmp_path)]
    assert main(args) == 0
    local = json.loads((tmp_path / "plan.json").read_text())
    ids = [i["id"] for i in local["baseline"]["known_issues"]]
    assert local["plan"]["enable_hybrid_engine"] is False and "he_broken_stack" in ids
    assert any("constraints/he.txt" in n for n in local["notes"])


def test_broken_baseline_is_said_in_plan_report_and_script(opt_66b_at_64):
    out, meta = opt_66b_at_64
    issues = meta["baseline"]["known_issues"]
    assert meta["baseline"]["broken_on_this_stack"] and issues[0]["id"] == "he_tp_cannot_shard"
    assert issues[0]["kind"] == "rule" and "mpu" in issues[0]["consequence"] and "#3998" in issues[0]["consequence"]
    assert meta["speedup_over_baseline"] is not None  # against the baseline as shipped
    script = (out / "run_step3.sh").read_text().splitlines()
    header = script[: script.index("set -euo pipefail")]
    assert any("he_tp_cannot_shard" in line and line.startswith("# ") for line in header)
    for report in ("report.md", "report.html"):
        text = (out / report).read_text()
        assert "he_tp_cannot_shard" in text and f"broken on stack {meta['stack']['name']} (" in text


def test_mark_keeps_the_broken_baseline_pickable(tmp_path):
    import json

    from dstune.cli import main

    args = [
        "search",
        "--model",
        "opt-66b",
        "--gpus",
        "64",
        "--stack",
        "he",
        "--known-issues",
        "mark",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    meta = json.loads((tmp_path / "plan.json").read_text())
    assert meta["baseline"]["broken_on_this_stack"]
    # a rule of the installed DeepSpeed is not a known issue: mark does not make the TP baseline pickable
    assert meta["plan"]["inference_tp_size"] == 1
    assert any(
        "cannot run on stack he (deepspeed 0.19.8, transformers 4.48.3) (rule he_tp_cannot_shard)" in n
        for n in meta["notes"]
    )


def test_by_default_opt_66b_targets_the_stack_its_script_runs_on(tmp_path):
    """run_66b.sh's inference_tp_size 8 needs DeepSpeed 0.9.0's HE slicing: the default target is dschat-2023,
    said in the first line, and the pick is within the tie tolerance of the script or faster."""
    import json

    from dstune.cli import main

    assert main(["search", "--model", "opt-66b", "--gpus", "64", "--out", str(tmp_path)]) == 0
    meta = json.loads((tmp_path / "plan.json").read_text())
    assert meta["stack"]["name"] == "dschat-2023" and meta["baseline"]["known_issues"] == []
    assert meta["speedup_over_baseline"]["value"] >= 1 - meta["tie_tolerance"]
