"""The DeepSpeed configs dstune's OpenRLHF prediction assumes against the ones OpenRLHF 0.11.2 builds:
its get_train_ds_config / get_eval_ds_config (deepspeed_utils.py, loaded by file path: torch, deepspeed,
packaging) called as its DeepspeedStrategy calls them (that class's own two methods, run on a strategy
built from the real parser's arguments), then validated by DeepSpeed's own config class."""

from __future__ import annotations

from typing import Any

import pytest

from dstune.costmodel import DEFAULT_CONSTANTS
from dstune.frameworks.openrlhf import examples, make_plan
from dstune.frameworks.openrlhf._cost_constants import DEFAULT_OPENRLHF_CONSTANTS
from dstune.frameworks.openrlhf._cost_memory import OVERLAP_COMM
from dstune.frameworks.openrlhf._deepspeed import assumed_eval_config, assumed_train_config
from dstune.frameworks.openrlhf._export import plan_argv
from dstune.frameworks.openrlhf._parser import run_parser


def _get(config: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        config = config[part]
    return config


PLANS = [e.plan() for e in examples()] + [
    make_plan({"ds.zero_stage": 2, "ds.adam_offload": True, "vllm.num_engines": 2, "train.micro_batch_size": 4}),
    make_plan({"ds.zero_stage": 3, "ref.offload": True, "reward.offload": True, "vllm.num_engines": 2}),
]


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: f"{p.placement}-z{p['ds.zero_stage']}-{p.estimator}")
def test_assumed_configs_match_openrlhfs(plan, builders, sources: tuple[str, str]) -> None:
    from deepspeed.runtime.config import DeepSpeedConfig

    args = run_parser(plan_argv(plan, "m", "r"), *sources).namespace
    strategy = builders.strategy(args)
    train = builders.train(strategy)
    for key, value in assumed_train_config(plan).items():
        assert _get(train, key) == value, key
    for role in ("ref", "reward"):
        built = builders.eval(strategy, offload=getattr(args, role).offload)
        for key, value in assumed_eval_config(plan, role).items():
            assert _get(built, key) == value, (role, key)
    parsed = DeepSpeedConfig({k: v for k, v in train.items() if k != "optimizer"})  # DeepSpeed accepts it (world 1)
    # OpenRLHF's "auto" sizes are dropped by DeepSpeed's config: the cost model assumes DeepSpeed's defaults.
    assert parsed.zero_config.max_live_parameters == DEFAULT_OPENRLHF_CONSTANTS.zero3_max_live_elements
    assert parsed.zero_config.reduce_bucket_size == DEFAULT_CONSTANTS.zero_bucket_elements
    # dstune's launch passes no --ds.overlap_comm: off below ZeRO-3, so one ZeRO 1-2 reduce bucket
    if int(plan["ds.zero_stage"]) < 3:
        assert float(parsed.zero_config.overlap_comm) == OVERLAP_COMM
