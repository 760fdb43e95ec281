"""Real trials: DeepSpeed on the CPU accelerator, started by the real deepspeed launcher / torchrun."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import psutil
import pytest

from dstune.errors import PlanRuleError, UserInputError
from dstune.plan import step_strategy
from dstune.profile import run_trial
from dstune.profile._process import group_alive
from dstune.record import Status

from .conftest import cluster, model, plan

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("cpu_accelerator")]


def _files(trial_dir: Path) -> set[str]:
    return {p.name for p in trial_dir.iterdir()}


def test_ppo_tiny_opt_world_2_zero3_actor_with_hybrid_engine(tmp_path: Path) -> None:
    p = plan(
        "ppo",
        actor_zero_stage=3,
        critic_zero_stage=1,
        enable_hybrid_engine=True,
        generation_batches=2,
        per_device_training_batch_size=1,
        actor_gradient_checkpointing=True,
    )
    result = run_trial(
        p,
        model=model("tiny-opt"),
        critic_model=model("tiny-opt"),
        cluster=cluster(2),
        trial_dir=tmp_path,
        warmup=1,
        steps=1,
    )
    assert result.status is Status.OK, result.log_tail
    assert tuple(result.phases) == step_strategy("ppo").phases  # the cost model's phase names, in its order
    assert all(seconds > 0 for seconds in result.phases.values())
    # 2 ranks x 2 generation batches x 2 prompts, each 16 prompt + 8 generated tokens
    assert result.samples_per_step == 2 * 2 * 2
    assert result.tokens_per_step == 2 * 2 * 2 * (16 + 8)
    assert result.world_size == 2 and result.device == "cpu"
    assert result.he_kernels is False  # OPT's HE policy is skipped with transformers 5; said in a note
    assert any("Hybrid Engine" in note for note in result.notes)
    assert result.host_peak_bytes and result.host_peak_bytes > 0
    assert {"deepspeed", "torch", "transformers", "python", "dstune"} <= set(result.versions)
    assert result.startup_s is not None and 0 < result.startup_s < result.wall_s
    assert {"cmd.json", "log.txt", "result.json"} <= _files(tmp_path)
    command = json.loads((tmp_path / "cmd.json").read_text())
    assert "deepspeed.launcher.runner" in command["argv"] and command["env"]["DS_ACCELERATOR"] == "cpu"
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "ok"


def test_ppo_zero3_offload_everything_lora_only_two_epochs(tmp_path: Path) -> None:
    """ZeRO-3 train and eval engines with offload (DeepSpeedCPUAdam), frozen bases under LoRA, the
    reward/critic value head on a zero.Init-built transformer, and an EMA copy gathered for each update."""
    p = plan(
        "ppo",
        actor_zero_stage=3,
        critic_zero_stage=3,
        offload=True,
        offload_reference_model=True,
        offload_reward_model=True,
        actor_lora_dim=4,
        critic_lora_dim=4,
        only_optimize_lora=True,
        critic_gradient_checkpointing=True,
        ppo_epochs=2,
        per_device_training_batch_size=1,
        enable_ema=True,
    )
    result = run_trial(
        p,
        model=model("tiny-opt"),
        critic_model=model("tiny-opt"),
        cluster=cluster(1),
        trial_dir=tmp_path,
        warmup=1,
        steps=1,
    )
    assert result.status is Status.OK, result.log_tail
    assert all(result.phases[name] > 0 for name in step_strategy("ppo").phases)
    assert result.samples_per_step == 2 and result.tokens_per_step == 2 * (16 + 8)
    assert result.he_kernels is None  # Hybrid Engine off
    assert "optimizer: DeepSpeedCPUAdam" in result.notes
    assert any("EMA copy of the actor" in note for note in result.notes)  # built and updated under ZeRO-3


def test_sft_tiny_llama_lora_only_optimize_lora_checkpointing(tmp_path: Path) -> None:
    p = plan(
        "sft",
        zero_stage=2,
        lora_dim=4,
        lora_module_name="layers.",
        only_optimize_lora=True,
        gradient_checkpointing=True,
        gradient_accumulation_steps=2,
    )
    result = run_trial(
        p,
        model=model("tiny-llama"),
        critic_model=None,
        cluster=cluster(1),
        trial_dir=tmp_path,
        warmup=1,
        steps=2,
        launcher="torchrun",
    )
    assert result.status is Status.OK, result.log_tail
    assert tuple(result.phases) == step_strategy("sft").phases
    assert all(seconds > 0 for seconds in result.phases.values())
    assert result.samples_per_step == 2 * 2 and result.tokens_per_step == 2 * 2 * 24
    assert len(result.step_times) == 2


def test_rm_tiny_opt_world_2_zero3_offload(tmp_path: Path) -> None:
    p = plan("rm", zero_stage=3, offload=True)
    result = run_trial(
        p,
        model=model("tiny-opt"),
        critic_model=None,
        cluster=cluster(2),
        trial_dir=tmp_path,
        warmup=1,
        steps=1,
        memory_cap_gb=1.0,
    )
    assert result.status is Status.OK, result.log_tail
    assert all(result.phases[name] > 0 for name in ("forward", "backward", "step"))
    # a sample is a chosen/rejected pair: 2 sequences of 24 tokens, 2 pairs per rank, 2 ranks
    assert result.samples_per_step == 4 and result.tokens_per_step == 4 * 2 * 24
    assert "optimizer: DeepSpeedCPUAdam" in result.notes
    assert any(note.startswith("--memory-cap-gb 1 ignored") for note in result.notes)


def test_timeout_ends_the_whole_process_group(tmp_path: Path) -> None:
    p = plan("sft")
    start = time.time()
    result = run_trial(
        p,
        model=model("tiny-opt"),
        critic_model=None,
        cluster=cluster(2),
        trial_dir=tmp_path,
        timeout_s=25,
        steps=10_000,
    )
    assert result.status is Status.TIMEOUT
    assert time.time() - start < 25 + 30
    pgid = int(result.error.split("process group ")[1].split()[0])
    assert not group_alive(pgid)
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    # the ranks the deepspeed launcher had spawned (its log names their pids) are gone too
    ranks = [int(m) for m in re.findall(r"process (\d+) spawned with command", (tmp_path / "log.txt").read_text())]
    assert len(ranks) == 2
    for pid in ranks:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "timeout"


def test_worker_that_raises_returns_error_with_log_tail(tmp_path: Path) -> None:
    config_dir = tmp_path / "bad-opt"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(
        json.dumps(
            {
                "model_type": "opt",
                "hidden_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 4,
                "ffn_dim": 64,
                "vocab_size": 256,
                "max_position_embeddings": 64,
                "word_embed_proj_dim": 64,
                "activation_function": "no_such_activation",
                "pad_token_id": 1,
                "bos_token_id": 2,
                "eos_token_id": 2,
            }
        )
    )
    p = plan("sft", max_seq_len=16, lora_module_name="layers.")
    result = run_trial(
        p,
        model=model(str(config_dir)),
        critic_model=None,
        cluster=cluster(1),
        trial_dir=tmp_path / "trial",
        launcher="torchrun",
    )
    assert result.status is Status.ERROR
    assert "no_such_activation" in result.error
    assert result.log_tail and "Traceback" in result.log_tail


def test_invalid_plan_is_refused_before_launch(tmp_path: Path) -> None:
    p = plan("sft", offload=True, zero_stage=0)
    with pytest.raises(PlanRuleError, match="offload_needs_zero"):
        run_trial(p, model=model("tiny-opt"), critic_model=None, cluster=cluster(1), trial_dir=tmp_path / "t")
    assert not (tmp_path / "t").exists()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "worker_result.json").write_text("{}")
    with pytest.raises(UserInputError, match="not empty"):
        run_trial(
            plan("sft"), model=model("tiny-opt"), critic_model=None, cluster=cluster(1), trial_dir=tmp_path / "used"
        )
    import torch

    if torch.ops.mkldnn._is_mkldnn_fp16_supported():
        return
    with pytest.raises(UserInputError, match="fp16"):
        run_trial(
            plan("sft", dtype="fp16"),
            model=model("tiny-opt"),
            critic_model=None,
            cluster=cluster(1),
            trial_dir=tmp_path / "t",
        )
    assert not (tmp_path / "t").exists()


def test_two_torchrun_agents_as_two_nodes_run_one_trial(tmp_path: Path) -> None:
    """Multi-node through torchrun's c10d rendezvous: two agents on this machine stand for two nodes."""
    from dstune.catalog import load_gpu, make_cluster

    hosts = tmp_path / "hostfile"
    hosts.write_text("localhost slots=1\n127.0.0.1 slots=1\n")
    two_nodes = make_cluster(load_gpu("A100-80G"), 2, 2)
    result = run_trial(
        plan("sft", zero_stage=2),
        model=model("tiny-opt"),
        critic_model=None,
        cluster=two_nodes,
        trial_dir=tmp_path / "t",
        warmup=1,
        steps=1,
        launcher="torchrun",
        hostfile=hosts,
    )
    assert result.status is Status.OK, result.log_tail
    assert result.world_size == 2 and all(seconds > 0 for seconds in result.phases.values())
    agents = json.loads((tmp_path / "t" / "agents.json").read_text())
    assert len(agents) == 2 and all("--rdzv_backend" in a and "c10d" in a for a in agents)


def test_dpo_tiny_opt_world_2_zero3_offloaded_reference(tmp_path: Path) -> None:
    p = plan("dpo", zero_stage=3, offload_reference_model=True, gradient_checkpointing=True)
    result = run_trial(
        p, model=model("tiny-opt"), critic_model=None, cluster=cluster(2), trial_dir=tmp_path, warmup=1, steps=1
    )
    assert result.status is Status.OK, result.log_tail
    assert tuple(result.phases) == step_strategy("dpo").phases
    assert all(seconds > 0 for seconds in result.phases.values())
    # a sample is a chosen/rejected pair: 2 sequences of 24 tokens, 2 pairs per rank, 2 ranks
    assert result.samples_per_step == 4 and result.tokens_per_step == 4 * 2 * 24
