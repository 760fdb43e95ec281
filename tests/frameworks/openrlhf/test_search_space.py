"""The OpenRLHF search space (issue 28, item 9): vLLM on GPUs of its own is not capped at colocated shares;
gradient checkpointing, ZeRO-1, the experience micro-batch and prefix caching are searched around the best
plans; a space file's refine section is checked like the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.errors import UserInputError
from dstune.frameworks.openrlhf import baseline_for, openrlhf_spec
from dstune.frameworks.openrlhf._search import REFINE, candidates, load_space, search_openrlhf

SPACE = Path(__file__).resolve().parents[3] / "search_spaces" / "openrlhf.yaml"


def _search(model: str, gpus: int, estimator: str):
    example = baseline_for(model, gpus, estimator)
    assert example is not None
    spec = load_model(model)
    return search_openrlhf(example.plan(), spec, spec, make_cluster(load_gpu("H100-80G"), gpus), load_space(SPACE))


@pytest.fixture(scope="module")
def grpo():
    return _search("llama-3-8b", 8, "group_norm")


def test_refine_flags_are_parser_flags() -> None:
    space = load_space(SPACE)
    refine = {k.removeprefix(REFINE) for k in space if k.startswith(REFINE)}
    assert refine == {
        "actor.gradient_checkpointing_enable",
        "ds.zero_stage",
        "rollout.micro_batch_size",
        "vllm.enable_prefix_caching",
    }
    assert refine <= openrlhf_spec().system_knobs


def test_vllm_on_its_own_gpus_is_not_capped() -> None:
    example = baseline_for("llama-3-8b", 16, "gae")
    assert example is not None
    plans, _ = candidates(example.plan(), 16, 8, load_space(SPACE))
    split = {p["vllm.gpu_memory_utilization"] for p in plans if p.placement != "colocated"}
    colocated = {p["vllm.gpu_memory_utilization"] for p in plans if p.placement == "colocated"}
    assert split == {0.9, 0.95} and max(colocated) <= 0.8


def test_refinement_searches_checkpointing_zero1_micro_and_prefix_caching(grpo) -> None:
    plans = grpo.table.plans
    assert any(not p["actor.gradient_checkpointing_enable"] for p in plans)
    assert any(p["ds.zero_stage"] == 1 for p in plans)
    assert any(p["vllm.enable_prefix_caching"] for p in plans)
    assert len({p["rollout.micro_batch_size"] for p in plans if not p["train.dynamic_batch_enable"]}) > 1
    pick = plans[grpo.pick]
    assert pick["vllm.enable_prefix_caching"]  # GRPO's samples share their prompt: prefill once per prompt


def test_prefix_caching_only_where_samples_share_a_prompt() -> None:
    found = _search("llama-3-8b", 16, "gae")
    assert not any(p["vllm.enable_prefix_caching"] for p in found.table.plans)


def test_refine_must_name_system_flags(tmp_path: Path) -> None:
    text = SPACE.read_text(encoding="utf-8").replace("refine:\n", "refine:\n  rollout.batch_size: [64]\n")
    path = tmp_path / "space.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserInputError, match="refine: rollout.batch_size"):
        load_space(path)


def test_zero1_reduces_once_per_step_and_keeps_whole_gradients() -> None:
    """ZeRO-2 reduce-scatters every micro-batch's gradients; ZeRO-1 reduces at the accumulation boundary only
    (stage_1_and_2.py), so with many micro-batches it trains faster and holds more memory."""
    from dstune.frameworks.openrlhf._cost import estimate_openrlhf

    example = baseline_for("llama-3-8b", 16, "gae")
    assert example is not None
    base = example.plan().with_flags({"train.dynamic_batch_enable": False, "train.micro_batch_size": 1})
    plans = [base.with_flags({"ds.zero_stage": s, "ds.adam_offload": False}) for s in (1, 2)]
    spec = load_model("llama-3-8b")
    table = estimate_openrlhf(plans, spec, spec, make_cluster(load_gpu("H100-80G"), 16))
    z1, z2 = table.row(0), table.row(1)
    assert z1["phases_s"]["train"] < z2["phases_s"]["train"]
    assert plans[0].placement == "split"
    held = sum(v for v in table.memory["actor", "train"].values())
    assert held[0] > held[1]


def test_role_sizes_divide_the_train_batch_and_fill_nodes() -> None:
    from dstune.frameworks.openrlhf._search import role_sizes

    assert role_sizes(128, 24, 8) == [1, 2, 4, 8, 16]
    assert role_sizes(96, 48, 8) == [1, 2, 3, 4, 6, 8, 16, 24, 32, 48]


@pytest.mark.parametrize(("gpus", "algo"), [(24, "grpo"), (48, "ppo")])
def test_starter_and_layouts_on_gpu_counts_the_train_batch_does_not_divide(
    gpus: int, algo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Once, the colocated starter took all 24 (48) GPUs, which DeepSpeed refuses for a train batch of 128: the
    baseline was infeasible, no speedup was shown, and every colocated layout was refused."""
    import json

    from dstune.cli import main

    argv = ["search", "--framework", "openrlhf", "--model", "llama-3-8b", "--gpus", str(gpus), "--algo", algo]
    assert main([*argv, "--gpu-type", "H100-80G", "--out", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["baseline"]["feasible"] and out["speedup"] is not None
    assert "colocated" in out["best_by_placement"]
    assert "the most whose count divides train.batch_size" in json.dumps(out)
