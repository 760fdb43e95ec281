"""What a worker measures (from spec.json) and the synthetic token ids it feeds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ._measure import PhaseTimer

OPT_NUM_PADDING_AT_BEGINNING = 1
"""DeepSpeed-Chat's --num_padding_at_beginning: 1 for OPT, 0 for the others."""


class Step(Protocol):
    """One measured step of a stage; `run` adds its phases' seconds to the timer."""

    samples_per_step_per_rank: int
    tokens_per_step_per_rank: int
    notes: list[str]
    he_kernels: bool | None

    def run(self, timer: PhaseTimer) -> None: ...


@dataclass
class TrialInputs:
    """What the worker was asked to measure, as read from spec.json."""

    step: str
    plan: dict[str, Any]
    model: dict[str, Any]
    """{"name", "hf_config"} of the actor / trained model."""
    critic_model: dict[str, Any] | None
    ds_configs: dict[str, dict[str, Any]]
    device: torch.device
    world_size: int
    seed: int = 1234


def synthetic_ids(
    config_values: Mapping[str, Any], rows: int, length: int, device: torch.device, generator: torch.Generator
) -> torch.Tensor:
    """Random token ids that are never pad, bos or eos (so nothing is masked or ends early)."""
    special = [int(config_values.get(k) or 0) for k in ("pad_token_id", "bos_token_id", "eos_token_id")]
    low = max(special) + 1
    ids = torch.randint(low, int(config_values["vocab_size"]), (rows, length), generator=generator)
    return ids.to(device)


def num_padding_at_beginning(hf_config: Mapping[str, Any]) -> int:
    return OPT_NUM_PADDING_AT_BEGINNING if hf_config.get("model_type") == "opt" else 0
