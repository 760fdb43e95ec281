"""DeepSpeed configs per role, each checked with DeepSpeed's own config class before it is written."""

from __future__ import annotations

import copy
from typing import Any

from ..errors import DstuneError
from ..plan import Plan, step_strategy, to_deepspeed


class ConfigRejected(DstuneError):
    """DeepSpeed refused a config dstune built: a bug in dstune, never the user's input."""


def validate_config(config: dict[str, Any], world_size: int) -> None:
    """Check one config with `deepspeed.runtime.config.DeepSpeedConfig` at `world_size` ranks.

    Without a process group DeepSpeedConfig falls back to world size 1 (even with an mpu), so the class
    is given the world size a run of `world_size` ranks reads from `dist.get_world_size()`, just before it
    reads the config: its own batch derivation and assertion (`train_batch == micro x accumulation x world`)
    and every other check then run as they do at start-up.
    """
    from deepspeed.runtime.config import DeepSpeedConfig

    class _AtWorld(DeepSpeedConfig):
        def _initialize_params(self, param_dict: dict[str, Any]) -> None:
            self.world_size = world_size
            super()._initialize_params(param_dict)

    try:
        parsed = _AtWorld(copy.deepcopy(config))
    except Exception as error:  # noqa: BLE001 - DeepSpeed raises assorted types for a bad config
        raise ConfigRejected(f"DeepSpeed rejected the config at world size {world_size}: {error}") from error
    if parsed.world_size != world_size:
        raise ConfigRejected(f"DeepSpeed read world size {parsed.world_size}, not {world_size}")


def role_configs(plan: Plan, world_size: int) -> dict[str, dict[str, Any]]:
    """File name -> validated config dict for every role of the plan's step."""
    files = step_strategy(plan.step).config_files
    configs = to_deepspeed(plan, world_size)
    if set(configs) != set(files):
        raise ConfigRejected(f"{plan.step} built configs for {sorted(configs)}, expected {sorted(files)}")
    from ._deepspeed_check import check_configs

    check_configs([(config, world_size) for config in configs.values()])
    return {files[role]: config for role, config in configs.items()}
