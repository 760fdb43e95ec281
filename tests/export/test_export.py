"""Export: DeepSpeed-validated configs, launch scripts, atomic writes."""

import json
from pathlib import Path

import pytest

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.errors import UserInputError
from dstune.export import (
    ConfigRejected,
    ExportInfo,
    _export,
    launch_script,
    plan_flags,
    role_configs,
    validate_config,
    write_export,
)
from dstune.plan import make_plan, to_deepspeed
from dstune.search import SearchRequest, Setup, SimulateBackend, load_space, run_search


def test_role_configs_pass_deepspeed_and_batch_check():
    plan = make_plan(
        "ppo",
        {
            "actor_zero_stage": 3,
            "critic_zero_stage": 2,
            "enable_hybrid_engine": True,
            "inference_tp_size": 2,
            "per_device_training_batch_size": 4,
            "gradient_accumulation_steps": 2,
        },
    )
    configs = role_configs(plan, 8)
    assert set(configs) == {
        "ds_config_actor.json",
        "ds_config_critic.json",
        "ds_config_ref.json",
        "ds_config_reward.json",
    }
    assert configs["ds_config_actor.json"]["hybrid_engine"]["inference_tp_size"] == 2
    assert configs["ds_config_actor.json"]["train_batch_size"] == 4 * 2 * 8
    bad = to_deepspeed(plan, 8)["actor"]
    with pytest.raises(ConfigRejected):
        validate_config(bad, 3)
    broken = dict(bad, zero_optimization={"stage": "three"})
    with pytest.raises(ConfigRejected):
        validate_config(broken, 8)


def test_sft_rm_have_one_config():
    for step in ("sft", "rm"):
        assert list(role_configs(make_plan(step, {"zero_stage": 2}), 4)) == ["ds_config.json"]


def test_launch_script_flags():
    plan = make_plan(
        "ppo",
        {
            "actor_zero_stage": 3,
            "critic_zero_stage": 3,
            "enable_hybrid_engine": True,
            "actor_lora_dim": 64,
            "actor_lora_module_name": "layers.",
            "offload_reference_model": True,
        },
    )
    flags = plan_flags(plan)
    assert "--enable_hybrid_engine" in flags and "--offload_reference_model" in flags
    assert "--offload" not in flags and "--only_optimize_lora" not in flags
    assert flags[flags.index("--actor_lora_module_name") + 1] == "layers."
    assert "--generation_batches" not in flags  # default value: left out
    text = launch_script(
        plan,
        model=load_model("llama-2-7b"),
        critic_model=load_model("llama-2-7b"),
        cluster=make_cluster(load_gpu("A100-80G"), 16),
    )
    assert "deepspeed --hostfile ${HOSTFILE:-hostfile} --num_nodes 2 --num_gpus 8 --master_port 12346 main.py" in text
    assert "ACTOR_MODEL_PATH=${1:-meta-llama/Llama-2-7b-hf}" in text
    assert "--num_padding_at_beginning 0" in text
    sft = launch_script(
        make_plan("sft", {"zero_stage": 3, "gradient_checkpointing": True}),
        model=load_model("opt-1.3b"),
        critic_model=None,
        cluster=make_cluster(load_gpu("A100-80G"), 1),
    )
    assert "--gradient_checkpointing" in sft and "--model_name_or_path $MODEL_PATH" in sft


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exp")
    setup = Setup("sft", load_model("opt-1.3b"), None, make_cluster(load_gpu("A100-80G"), 8))
    backend = SimulateBackend(model=setup.model, critic_model=None, cluster=setup.cluster, cap_bytes=72e9)
    from dstune.search import SPACES_DIR

    req = SearchRequest(
        setup=setup,
        space=load_space(SPACES_DIR / "sft.yaml"),
        backend=backend,
        storage=f"sqlite:///{tmp}/study.db",
        study_name="e",
        trials=4,
        seed=0,
    )
    return run_search(req)


INFO = ExportInfo(backend="simulate", backend_note="simulated", storage="sqlite://", study_name="e", headroom=0.1)


def test_export_writes_plan_and_trials(result, tmp_path):
    files = write_export(result, tmp_path, INFO)
    assert set(files) == {"ds_config.json", "run_step1.sh", "trials.csv", "plan.json"}
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["plan"] == result.pick.values and plan["baseline"]["script"].endswith(".sh")
    header = (tmp_path / "trials.csv").read_text().splitlines()[0].split(",")
    for column in (
        "number",
        "status",
        "source",
        "zero_stage",
        "predicted_samples_per_s",
        "measured_gpu_peak_bytes",
        "predicted_time_forward",
        "reason",
        "p_fit",
    ):
        assert column in header


def test_failed_export_leaves_previous_files_untouched(result, tmp_path, monkeypatch):
    write_export(result, tmp_path, INFO)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    calls = {"n": 0}
    real = _export.os.replace

    def flaky(src, dst):
        calls["n"] += 1
        if Path(dst).parent == tmp_path:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(_export.os, "replace", flaky)
    with pytest.raises(UserInputError, match="cannot write"):
        write_export(result, tmp_path, INFO)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_rejected_config_writes_nothing(result, tmp_path, monkeypatch):
    def reject(plan, world):
        raise ConfigRejected("DeepSpeed rejected the config: test")

    monkeypatch.setattr(_export, "role_configs", reject)
    with pytest.raises(ConfigRejected):
        write_export(result, tmp_path, INFO)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_out(result, tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("")
    with pytest.raises(UserInputError, match="not writable"):
        write_export(result, blocker / "x", INFO)


def test_script_header_names_a_broken_baseline():
    from dstune.export._script import baseline_warnings, launch_script
    from dstune.search import BaselineIssue

    issue = BaselineIssue("some_broken_issue", "crashes in step 3", ("org/repo#1",))
    plan = make_plan("sft", {})
    cluster = make_cluster(load_gpu("A100-80G"), 8)
    text = launch_script(
        plan, model=load_model("opt-1.3b"), critic_model=None, cluster=cluster, warnings=baseline_warnings([issue])
    )
    lines = text.splitlines()
    warning = next(line for line in lines if "some_broken_issue" in line)
    assert warning.startswith("# ") and "crashes in step 3" in warning
    assert lines.index(warning) < lines.index("set -euo pipefail")
    assert "some_broken_issue" not in launch_script(
        plan, model=load_model("opt-1.3b"), critic_model=None, cluster=cluster
    )
    assert "This plan avoids it" in warning
    (kept,) = baseline_warnings([issue], pick_hits=("some_broken_issue",))
    assert "This plan hits it too (--known-issues mark kept it)" in kept and "avoids" not in kept


def test_mark_with_a_broken_he_pick_does_not_claim_to_avoid_it(tmp_path):
    """--stack local --known-issues mark on a stack where OPT's HE is broken: if the pick enables the HE, the
    launch script's header says it hits he_broken_stack too, never that it avoids it."""
    from dstune.cli import main
    from dstune.doctor import local_stack

    if local_stack().he_verdict("opt") != "broken":
        pytest.skip("this machine's OPT verdict is not broken")
    args = ["search", "--model", "opt-6.7b", "--gpus", "8", "--stack", "local", "--known-issues", "mark"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    meta = json.loads((tmp_path / "plan.json").read_text())
    header = (tmp_path / "run_step3.sh").read_text().split("set -euo pipefail")[0]
    line = next(x for x in header.splitlines() if "he_broken_stack" in x and x.startswith("# WARNING"))
    if meta["plan"]["enable_hybrid_engine"]:
        assert "This plan hits it too" in line and "avoids" not in line
    else:
        assert "This plan avoids it" in line
