"""DeepSpeed configs per role, each checked with DeepSpeed's own config class before it is written."""

from __future__ import annotations

import copy
from typing import Any

from ..errors import DstuneError
from ..plan import Plan, step_strategy, to_deepspeed


class ConfigRejected(DstuneError):
    """DeepSpeed refused a config dstune built: a bug in dstune, never the user's input."""


def validate_config(config: dict[str, Any], world_size: int) -> None:
    """Check one config with `deepspeed.runtime.config.DeepSpeedConfig`.

    Without a process group DeepSpeedConfig sees world size 1 (it falls back when
    `dist.get_rank()` fails, even with an mpu), so the batch triple is checked here for the
    real world size and DeepSpeed gets the per-rank view (train_batch_size = micro x accumulation)
    with the accumulation made explicit; every other key is validated as written.
    """
    from deepspeed.runtime.config import DeepSpeedConfig

    micro = config["train_micro_batch_size_per_gpu"]
    total = config["train_batch_size"]
    if total % (micro * world_size):
        raise ConfigRejected(f"train_batch_size {total} != micro {micro} x accumulation x world {world_size}")
    accumulation = total // (micro * world_size)
    view = copy.deepcopy(config)
    view["train_batch_size"] = micro * accumulation
    view["gradient_accumulation_steps"] = accumulation
    try:
        parsed = DeepSpeedConfig(view)
    except Exception as error:  # noqa: BLE001 - DeepSpeed raises assorted types for a bad config
        raise ConfigRejected(f"DeepSpeed rejected the config: {error}") from error
    if parsed.train_micro_batch_size_per_gpu != micro or parsed.gradient_accumulation_steps != accumulation:
        raise ConfigRejected("DeepSpeed read back different batch settings")


def role_configs(plan: Plan, world_size: int) -> dict[str, dict[str, Any]]:
    """File name -> validated config dict for every role of the plan's step."""
    files = step_strategy(plan.step).config_files
    configs = to_deepspeed(plan, world_size)
    if set(configs) != set(files):
        raise ConfigRejected(f"{plan.step} built configs for {sorted(configs)}, expected {sorted(files)}")
    from ._deepspeed_check import check_configs

    check_configs([(config, world_size) for config in configs.values()])
    return {files[role]: config for role, config in configs.items()}
