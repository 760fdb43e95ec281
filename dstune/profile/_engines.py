"""Wrap built models in DeepSpeed engines as DeepSpeed-Chat does: LoRA, optimizer, initialize."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._lora import (
    convert_linear_layer_to_lora,
    make_model_gradient_checkpointing_compatible,
    only_optimize_lora_parameters,
)

NO_DECAY_NAMES = ("bias", "layer_norm.weight", "layernorm.weight", "norm.weight", "ln_f.weight")
ADAM_BETAS = (0.9, 0.95)
LORA_LEARNING_RATE = 5e-4


@dataclass(frozen=True)
class Adapters:
    """DeepSpeed-Chat's LoRA knobs for one trained model."""

    lora_dim: int = 0
    module_name: str = "decoder.layers."
    only_optimize_lora: bool = False
    force_optimize: tuple[str, ...] = ()
    """Parameters trained even with only_optimize_lora (step 2 trains `v_head.weight`)."""


def apply_lora(model: nn.Module, adapters: Adapters) -> int:
    """convert_linear_layer_to_lora, then only_optimize_lora + checkpointing compatibility."""
    if adapters.lora_dim <= 0:
        return 0
    converted = convert_linear_layer_to_lora(model, adapters.module_name, adapters.lora_dim)
    if adapters.only_optimize_lora:
        only_optimize_lora_parameters(model, adapters.force_optimize)
        make_model_gradient_checkpointing_compatible(model)
    return converted


def grouped_parameters(model: nn.Module, weight_decay: float, lora_lr: float = LORA_LEARNING_RATE) -> list[dict]:
    """get_optimizer_grouped_parameters: decayed, LoRA (own lr), and no-decay groups; trainable only."""
    decay, lora, no_decay = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if any(nd in name.lower() for nd in NO_DECAY_NAMES):
            no_decay.append(param)
        elif "lora_right_weight" in name or "lora_left_weight" in name:
            lora.append(param)
        else:
            decay.append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": lora, "weight_decay": weight_decay, "lr": lora_lr},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def make_optimizer(params: list[dict], *, offload: bool, lr: float) -> tuple[torch.optim.Optimizer, str]:
    """DeepSpeed-Chat's choice: DeepSpeedCPUAdam with offload, FusedAdam otherwise.

    On DeepSpeed's CPU accelerator without offload FusedAdam (a CUDA kernel) cannot
    run; there we use `torch.optim.AdamW`: it is the same update (FusedAdam and
    DeepSpeedCPUAdam default to AdamW mode), steps where the engine keeps the
    states (host memory), and needs no JIT build (DeepSpeedCPUAdam's first use
    compiles for ~70 s, which would dominate a short trial). With offload,
    ZeRO insists on DeepSpeedCPUAdam, so it is used on CPU too.
    """
    from deepspeed.accelerator import get_accelerator

    if offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(params, lr=lr, betas=ADAM_BETAS), "DeepSpeedCPUAdam"
    if get_accelerator().device_name() == "cpu":
        return torch.optim.AdamW(params, lr=lr, betas=ADAM_BETAS), "torch.optim.AdamW"
    from deepspeed.ops.adam import FusedAdam

    return FusedAdam(params, lr=lr, betas=ADAM_BETAS), "FusedAdam"


def train_engine(
    model: nn.Module, config: Mapping[str, Any], *, offload: bool, lr: float, weight_decay: float = 0.0
) -> tuple[Any, str]:
    """deepspeed.initialize(model, optimizer, config) for a trained role; (engine, optimizer name)."""
    import deepspeed

    optimizer, name = make_optimizer(grouped_parameters(model, weight_decay), offload=offload, lr=lr)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=dict(config))
    return engine, name


def eval_engine(model: nn.Module, config: Mapping[str, Any]) -> Any:
    """deepspeed.initialize(model, config) for a frozen role (reference, reward)."""
    import deepspeed

    engine, *_ = deepspeed.initialize(model=model, config=dict(config))
    return engine
