"""The exported step-3 script carries DeepSpeed-Chat's shipped training flags and a critic path that works."""

import subprocess

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.export import launch_script
from dstune.plan import make_plan

PLAN = make_plan(
    "ppo",
    {
        "actor_zero_stage": 3,
        "critic_zero_stage": 3,
        "enable_hybrid_engine": True,
        "per_device_generation_batch_size": 4,
        "per_device_training_batch_size": 4,
    },
)


def _script() -> str:
    return launch_script(
        PLAN,
        model=load_model("opt-6.7b"),
        critic_model=load_model("opt-350m"),
        cluster=make_cluster(load_gpu("A100-80G"), 8),
    )


def _value(text: str, flag: str) -> str:
    line = next(line for line in text.splitlines() if line.strip().startswith(flag + " "))
    return line.split()[1]


def test_ppo_script_turns_actor_dropout_off_like_every_shipped_script():
    text = _script()
    assert _value(text, "--actor_dropout") == "0.0"
    assert _value(text, "--actor_weight_decay") == "0.1" and _value(text, "--critic_weight_decay") == "0.1"


def test_sft_script_has_no_step3_flags():
    text = launch_script(
        make_plan("sft", {"zero_stage": 2}),
        model=load_model("opt-1.3b"),
        critic_model=None,
        cluster=make_cluster(load_gpu("A100-80G"), 8),
    )
    assert "--actor_dropout" not in text and "CRITIC_MODEL_PATH" not in text


def test_critic_path_is_a_step2_output_directory(tmp_path):
    text = _script()
    assert "CRITIC_MODEL_PATH=${2:-../step2_reward_model_finetuning/output}" in text
    assert "pytorch_model.bin" in text and "facebook/opt-350m}" not in text
    script = tmp_path / "run_step3.sh"
    script.write_text(text)
    subprocess.run(["bash", "-n", str(script)], check=True)
    empty = tmp_path / "not_step2"
    empty.mkdir()
    run = subprocess.run(
        ["bash", str(script), "facebook/opt-6.7b", str(empty), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 2 and "step-2 output directory" in run.stderr
    assert not (tmp_path / "out").exists()  # refused before anything starts


STEP2_DPO_MAIN_FLAGS = {
    # training/step2_dpo_finetuning/main.py parse_args() in DeepSpeedExamples (DeepSpeed-Chat)
    "--data_path",
    "--data_split",
    "--data_output_path",
    "--model_name_or_path",
    "--per_device_train_batch_size",
    "--per_device_eval_batch_size",
    "--max_seq_len",
    "--learning_rate",
    "--weight_decay",
    "--num_train_epochs",
    "--beta",
    "--label_smoothing",
    "--gradient_accumulation_steps",
    "--lr_scheduler_type",
    "--num_warmup_steps",
    "--output_dir",
    "--seed",
    "--local_rank",
    "--gradient_checkpointing",
    "--dropout",
    "--offload",
    "--dtype",
    "--offload_reference_model",
    "--zero_stage",
    "--lora_dim",
    "--lora_module_name",
    "--only_optimize_lora",
    "--lora_learning_rate",
    "--compute_fp32_loss",
    "--enable_tensorboard",
    "--tensorboard_path",
    "--add_eot_token",
    "--print_loss",
    "--deepspeed",
}


def test_dpo_script_passes_only_flags_step2_dpo_main_accepts(tmp_path):
    plan = make_plan(
        "dpo",
        {
            "zero_stage": 3,
            "offload_reference_model": True,
            "gradient_checkpointing": True,
            "lora_dim": 64,
            "lora_module_name": "decoder.layers.",
            "only_optimize_lora": True,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 4,
            "dtype": "bf16",
        },
    )
    text = launch_script(
        plan, model=load_model("opt-1.3b"), critic_model=None, cluster=make_cluster(load_gpu("A100-80G"), 8)
    )
    flags = {word for line in text.splitlines() for word in line.split() if word.startswith("--")}
    flags -= {"--num_gpus", "--master_port"}  # the deepspeed launcher's own
    assert flags <= STEP2_DPO_MAIN_FLAGS, flags - STEP2_DPO_MAIN_FLAGS
    assert {"--offload_reference_model", "--gradient_accumulation_steps", "--lora_dim", "--dtype"} <= flags
    assert "main.py" in text and "step2_dpo_finetuning" in text
    assert _value(text, "--dropout") == "0.0" and _value(text, "--weight_decay") == "0.1"
    script = tmp_path / "run_step2_dpo.sh"
    script.write_text(text)
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_enable_ema_is_exported_as_the_shipped_scripts_set_it():
    """single_node/run_1.3b.sh passes `--enable_ema`, the other step-3 scripts do not: the baseline plan reads
    it so, and the exported script passes the bare flag exactly when the plan sets it."""
    from pathlib import Path

    from dstune.plan import baseline_plan, parse_script

    shipped = Path(__file__).parent / "shipped"
    critic = load_model("opt-350m")
    seen = set()
    for name, gpus in (("opt-1.3b", 8), ("opt-6.7b", 8), ("opt-13b", 8), ("opt-1.3b", 1), ("opt-66b", 64)):
        model = load_model(name)
        baseline = baseline_plan("ppo", model, gpus, critic_model=critic)
        script = parse_script((shipped / baseline.script.removeprefix("DeepSpeed-Chat training/")).read_text())
        exported = parse_script(
            launch_script(
                baseline.plan, model=model, critic_model=critic, cluster=make_cluster(load_gpu("A100-80G"), gpus)
            )
        )
        assert baseline.plan.enable_ema == ("enable_ema" in script) == ("enable_ema" in exported)
        seen.add(baseline.plan.enable_ema)
    assert seen == {True, False}
    assert exported.get("enable_ema") is None and "--enable_ema" not in _script()
