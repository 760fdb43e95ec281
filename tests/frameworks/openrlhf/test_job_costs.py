"""What the pass-through flags of a pick cost (issue 28, item 9): dynamic filtering draws prompts until enough
groups pass, at the pass rate the user states; checkpoint saves write DeepSpeed's (and the HF) checkpoint every
`ckpt.save_steps` iterations."""

from __future__ import annotations

from typing import Any

import pytest

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.cli import main
from dstune.errors import UserInputError
from dstune.frameworks.openrlhf import OpenRLHFJob, examples, make_plan
from dstune.frameworks.openrlhf._cost import estimate_openrlhf


def _dapo() -> Any:
    """train_dapo_ray_hybrid_engine: --algo.dynamic_filtering_enable, --ckpt.save_steps 20, --ckpt.save_hf."""
    return next(e for e in examples() if e.name == "train_dapo_ray_hybrid_engine").plan()


def _rows(plans: list[Any]) -> list[dict[str, Any]]:
    spec = load_model("qwen2.5-7b")
    table = estimate_openrlhf(plans, spec, spec, make_cluster(load_gpu("H100-80G"), 8))
    return [table.row(i) for i in range(len(plans))]


def _with(plan: Any, kept: tuple[str, ...] | None = None, rate: float = 1.0) -> Any:
    job = OpenRLHFJob(plan.job.reward, plan.job.prompt_tokens, plan.job.answer_mean_ratio, rate)
    return make_plan(dict(plan.values), job, plan.kept if kept is None else kept)


def test_dynamic_filtering_draws_prompts_at_the_pass_rate() -> None:
    dapo = _dapo()
    assert dapo.kept_value("algo.dynamic_filtering_enable") == ""
    unfiltered = tuple(t for t in dapo.kept if t != "--algo.dynamic_filtering_enable")
    full, half, off = _rows([_with(dapo), _with(dapo, rate=0.5), _with(dapo, unfiltered, rate=0.5)])
    decode = "generate: decode"
    assert full["phase_parts_s"][decode] == pytest.approx(off["phase_parts_s"][decode])
    assert half["phase_parts_s"][decode] > 1.5 * full["phase_parts_s"][decode]


def test_checkpoint_saves_are_spread_over_save_steps() -> None:
    dapo = _dapo()
    assert dapo.kept_value("ckpt.save_steps") == "20"
    every_40 = tuple(
        "40" if t == "20" and dapo.kept[i - 1] == "--ckpt.save_steps" else t for i, t in enumerate(dapo.kept)
    )
    never = tuple(t for t in dapo.kept if t not in ("--ckpt.save_steps", "20", "--ckpt.save_hf"))
    twenty, forty, none = (
        r["phase_parts_s"]["train: checkpoint save (per iteration)"]
        for r in _rows([_with(dapo), _with(dapo, every_40), _with(dapo, never)])
    )
    assert none == 0.0 and twenty == pytest.approx(2.0 * forty) and twenty > 0


def test_filter_pass_rate_is_checked_and_openrlhf_only(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UserInputError, match="filter pass rate"):
        OpenRLHFJob(filter_pass_rate=0.0)
    assert main(["estimate", "--model", "opt-1.3b", "--gpus", "8", "--filter-pass-rate", "0.5"]) == 2
    assert "OpenRLHF option" in capsys.readouterr().err
