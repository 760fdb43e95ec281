"""`dstune estimate|search --framework openrlhf` end to end, and the one-line refusals of issue 20."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from dstune.cli import main
from dstune.frameworks.openrlhf._parser import check_exact_flags, run_parser

BASE = ["--framework", "openrlhf", "--model", "llama-3-8b", "--gpus", "8", "--gpu-type", "H100-80G"]


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("algo", ["ppo", "grpo", "reinforce++", "rloo", "dr_grpo"])
def test_estimate_each_algorithm(algo: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, ["estimate", *BASE, "--algo", algo])
    assert out["feasible"] and out["samples_per_s"] > 0
    assert set(out["memory_per_gpu"]) == set(out["timeline_busy_s"])
    assert "no published rows" in out["constants_basis"] and "weight sync fitted to 3 rows" in out["constants_basis"]
    assert out["estimator"] == {"ppo": "gae", "grpo": "group_norm", "reinforce++": "reinforce"}.get(algo, algo)


def test_estimate_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", *BASE, "--algo", "grpo"]) == 0
    text = capsys.readouterr().out
    assert "train_dapo_ray_hybrid_engine.sh" in text and "is_correction_enable" in text
    assert "phase timeline per GPU group" in text and "GPU memory per GPU" in text


def test_search_writes_a_script_the_real_parser_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sources: tuple[str, str]
) -> None:
    out = _json(capsys, ["search", *BASE, "--algo", "grpo", "--out", str(tmp_path)])
    assert out["baseline_basis"].startswith("shipped example examples/scripts/train_dapo_ray_hybrid_engine.sh")
    assert out["speedup"] is not None and out["speedup"] >= 1.0
    assert "no interval" in out["speedup_basis"]
    for flag in (
        "rollout.batch_size",
        "rollout.n_samples_per_prompt",
        "train.batch_size",
        "data.max_len",
        "algo.advantage.estimator",
        "algo.kl.init_coef",
    ):
        assert out["plan"][flag] == out["baseline_plan"][flag], flag
    text = (tmp_path / "run_openrlhf.sh").read_text()
    argv = shlex.split(text.split("openrlhf.cli.train_ppo_ray", 1)[1].replace("\\\n", " "))
    parsed = run_parser(argv, *sources)
    check_exact_flags(argv, parsed.options)
    assert "--algo.dynamic_filtering_enable" in argv  # the baseline's unmodelled job flags stay
    assert json.loads((tmp_path / "plan.json").read_text())["flags"] == out["flags"]


def test_explore_gives_other_jobs_their_own_picks_never_the_headline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = _json(capsys, ["search", *BASE, "--algo", "grpo", "--out", str(tmp_path / "plain")])
    wide = _json(
        capsys, ["search", *BASE, "--algo", "grpo", "--explore", "batch,samples", "--out", str(tmp_path / "w")]
    )
    assert (wide["speedup"], wide["flags"]) == (plain["speedup"], plain["flags"])  # the headline is the job's
    assert plain["alternatives"] == [] and wide["explore"] == ["batch", "samples"]
    base = wide["baseline_plan"]
    jobs = {alt["job"] for alt in wide["alternatives"]}
    assert wide["job"] not in jobs and len(jobs) == len(wide["alternatives"]) == 8
    for alt in wide["alternatives"]:
        assert alt["different_training"] is True
        assert any(base[k] != v for k, v in alt["job_changes"].items())
        if "samples_per_s" in alt and alt["speedup_vs_baseline_settings"] is not None:
            assert alt["speedup_vs_baseline_settings"] >= 0.99  # within the tie tolerance of the best
    samples = [
        a
        for a in wide["alternatives"]
        if set(a["job_changes"]) == {"rollout.n_samples_per_prompt", "rollout.batch_size"}
    ]
    for alt in samples:  # samples per rollout kept
        changes = alt["job_changes"]
        assert changes["rollout.n_samples_per_prompt"] * changes["rollout.batch_size"] == (
            base["rollout.n_samples_per_prompt"] * base["rollout.batch_size"]
        )
    assert main(["search", *BASE, "--algo", "grpo", "--explore", "batch", "--out", str(tmp_path / "t")]) == 0
    assert "different training" in capsys.readouterr().out


def test_explore_lora_from_full_and_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full = _json(capsys, ["search", *BASE, "--algo", "ppo", "--explore", "lora", "--out", str(tmp_path / "f")])
    ranks = {alt["job_changes"]["ds.lora.rank"]: alt for alt in full["alternatives"]}
    assert set(ranks) == {16, 64} and all(a["job"].startswith("LoRA r=") for a in ranks.values())
    assert full["job"].startswith("full fine-tuning")
    assert ranks[16]["samples_per_s"] > full["samples_per_s"]  # adapters only: no base weight grads, a tiny Adam
    assert full["known_issues"] == [] and all("OpenRLHF#1349" in a["known_issues"][0] for a in ranks.values())
    lora = _json(
        capsys,
        [
            "search",
            *BASE,
            "--algo",
            "ppo",
            "--set",
            "ds.lora.rank=16",
            "--explore",
            "lora",
            "--out",
            str(tmp_path / "l"),
        ],
    )
    assert lora["plan"]["ds.lora.rank"] == 16 and lora["job"].startswith("LoRA r=16")  # the baseline's job
    assert {alt["job_changes"]["ds.lora.rank"] for alt in lora["alternatives"]} == {0, 64}
    assert "lora-vllm-weight-sync" in lora["known_issues"][0]  # the LoRA job is kept, and said not to run on 0.11.2
    assert "--ds.lora.rank 16" in (tmp_path / "l" / "run_openrlhf.sh").read_text()


def test_search_for_a_split_placement_on_16_gpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "search",
        "--framework",
        "openrlhf",
        "--model",
        "llama-3-8b",
        "--gpus",
        "16",
        "--gpu-type",
        "H100-80G",
        "--algo",
        "ppo",
        "--reward",
        "model",
        "--out",
        str(tmp_path),
    ]
    out = _json(capsys, argv)
    assert out["baseline_basis"].startswith("shipped example examples/scripts/train_ppo_ray_slurm.sh")
    assert out["feasible"] and out["gpus"] == 16


@pytest.mark.parametrize(
    "argv,message",
    [
        (["estimate", *BASE[2:], "--framework", "verl"], "invalid choice"),
        (["estimate", *BASE, "--algo", "dpo"], "unknown algorithm 'dpo'"),
        (["estimate", *BASE, "--algo", "grpo", "--set", "actor_zero_stage=3"], "DeepSpeed-Chat knob"),
        (["estimate", *BASE[2:], "--set", "ds.zero_stage=3"], "OpenRLHF flag"),
        (["estimate", *BASE[2:], "--algo", "grpo"], "--algo is an OpenRLHF option"),
        (
            ["estimate", *BASE, "--algo", "grpo", "--set", "rollout.n_samples_per_prompt=1"],
            "check 'group estimator needs n_samples_per_prompt > 1'",
        ),
        (
            ["estimate", *BASE, "--algo", "grpo", "--set", "vllm.num_engines=2"],
            "check 'colocate_all needs actor GPUs = engines x TP'",
        ),
        (["estimate", *BASE, "--algo", "grpo", "--set", "vllm.num_engines=0"], "check 'packing needs vLLM engines'"),
        (["estimate", *BASE, "--algo", "grpo", "--step", "ppo"], "--step is a DeepSpeed-Chat option"),
        (["search", *BASE, "--algo", "grpo", "--backend", "profile"], "no OpenRLHF trial runner"),
        (["profile", *BASE], "no trial runner"),
        (["profile", *BASE, "--algo", "grpo"], "no trial runner"),
        (["search", *BASE, "--algo", "grpo", "--storage", "sqlite:///x.db"], "--storage is a DeepSpeed-Chat option"),
        (["search", *BASE, "--algo", "grpo", "--global-batch", "64"], "--set rollout.batch_size=N"),
        (["search", *BASE, "--algo", "grpo", "--explore", "lora,epochs"], "--explore 'epochs' is not an OpenRLHF"),
    ],
)
def test_refusals_are_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) if "invalid choice" in message else _no_raise():
        code = main(argv)
        assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


class _no_raise:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_versions_outside_the_supported_ones_say_so() -> None:
    from dstune.frameworks import get_framework

    openrlhf = get_framework("openrlhf")
    assert openrlhf.check_version("0.11.2") is None
    assert "not a supported version (0.11.2)" in (openrlhf.check_version("0.10.4") or "")


def test_headroom_caps_the_pick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loose = _json(capsys, ["search", *BASE, "--algo", "grpo", "--out", str(tmp_path / "a"), "--headroom", "0.02"])
    tight = _json(capsys, ["search", *BASE, "--algo", "grpo", "--out", str(tmp_path / "b"), "--headroom", "0.3"])
    card = tight["gpu_capacity_bytes"]
    assert tight["gpu_peak_bytes"] <= 0.7 * card < loose["gpu_capacity_bytes"]
    assert tight["samples_per_s"] <= loose["samples_per_s"]


def _report_script(tmp_path: Path, thread: str) -> tuple[Path, dict]:
    import yaml

    reports = yaml.safe_load((Path(__file__).parent / "oom_reports.yaml").read_text())
    report = next(r for r in reports if r["thread"].endswith(thread))
    args = ["--actor.model_name_or_path", "Qwen/Qwen2.5-7B", "--reward.remote_url", "http://rm/query"]
    for flag, value in {**report["flags"], **report["unknown_most_saving"]}.items():
        args += [f"--{flag}"] if value is True else [f"--{flag}", str(value)]
    script = tmp_path / "run.sh"
    script.write_text("ray job submit -- python3 -m openrlhf.cli.train_ppo_ray \\\n   " + " \\\n   ".join(args) + "\n")
    return script, report


def test_estimate_an_existing_script_names_what_overflows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script, report = _report_script(tmp_path, "887")
    argv = [
        "estimate",
        "--framework",
        "openrlhf",
        "--model",
        report["model"],
        "--gpus",
        str(report["gpus"]),
        "--gpu-type",
        report["gpu_type"],
        "--script",
        str(script),
        "--prompt-tokens",
        "1024",
    ]
    out = _json(capsys, argv)
    assert not out["feasible"]
    assert "actor GPUs during train" in out["infeasible_reasons"][0] and "logits" in out["infeasible_reasons"][0]
    assert out["fitting_plan"]["changes"] and out["fitting_plan"]["gpu_peak_bytes"] < out["gpu_cap_bytes"]
    found = _json(capsys, ["search", *argv[1:], "--out", str(tmp_path / "fit")])
    assert found["feasible"] and found["plan"]["rollout.max_new_tokens"] == 36864
    assert found["speedup"] is None and not found["baseline"]["feasible"]
    assert "--reward.remote_url" in (tmp_path / "fit" / "run_openrlhf.sh").read_text()


def test_a_script_with_old_flag_names_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "old.sh"
    script.write_text("python -m openrlhf.cli.train_ppo_ray --vllm_num_engines 2 --colocate_all_models\n")
    assert main(["estimate", *BASE, "--script", str(script)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pre-0.10.2 flag names (--vllm_num_engines)" in err[0]


_LAYOUT = "placements: [colocated]\nsplit_vllm_share: [0.5]\nsplit_actor_share: [0.5]\nvllm.tensor_parallel_size: [1]\n"


@pytest.mark.parametrize(
    "text,message",
    [
        (
            _LAYOUT + "rollout.batch_size: [64]\n",
            "rollout.batch_size is a job flag",
        ),
        (
            _LAYOUT + "actor_zero_stage: [3]\n",
            "actor_zero_stage is not an OpenRLHF system flag",
        ),
        (
            "placements: [hybrid]\nsplit_vllm_share: [0.5]\nsplit_actor_share: [0.5]\nvllm.tensor_parallel_size: [1]\n",
            "unknown placement",
        ),
    ],
)
def test_a_bad_space_is_refused(text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(text)
    assert main(["search", *BASE, "--algo", "grpo", "--space", str(space), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o").exists()


def test_deepspeed_chat_stays_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    plain = _json(capsys, ["estimate", "--model", "opt-1.3b", "--gpus", "8", "--gpu-type", "H100-80G"])
    named = _json(
        capsys,
        ["estimate", "--framework", "deepspeed-chat", "--model", "opt-1.3b", "--gpus", "8", "--gpu-type", "H100-80G"],
    )
    assert plain == named and plain["step"] == "ppo" and "memory_per_gpu" not in plain


def test_the_starter_plan_spans_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, ["estimate", *BASE[:4], "--gpus", "16", "--gpu-type", "H100-80G", "--algo", "reinforce++"])
    assert out["plan"]["actor.num_nodes"] == 2 and out["plan"]["actor.num_gpus_per_node"] == 8
    assert out["plan"]["vllm.num_engines"] == 16 and out["feasible"]
