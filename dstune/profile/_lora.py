"""DeepSpeed-Chat's LoRA layer (dschat/utils/module/lora.py), attribute for attribute.

Why not peft: DeepSpeed's Hybrid Engine fuses LoRA into the base weight before
generating by looking for modules with exactly these attributes
(`policy.maybe_get_lora` checks `hasattr(module, "lora_right_weight")` and reads
`lora_right_weight`, `lora_left_weight`, `lora_scaling`). peft's `lora_A` /
`lora_B` modules are invisible to it, so with peft the engine would generate
with unfused adapters (different speed, different memory) from what
DeepSpeed-Chat measures.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LinearLayer_LoRA(nn.Module):  # noqa: N801 - DeepSpeed-Chat's class name
    """A frozen Linear plus a rank-`lora_dim` update `x @ right @ left * scaling`."""

    def __init__(
        self,
        weight: torch.Tensor,
        lora_dim: int = 0,
        lora_scaling: float = 1,
        lora_dropout: float = 0,
        bias: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if lora_dim <= 0:
            raise ValueError("You are training to use LoRA, whose reduced dim should be larger than 1")
        self.weight = weight
        self.bias = bias
        partitioned = getattr(weight, "ds_shape", None)  # a ZeRO-3 partitioned parameter's full shape
        rows, columns = weight.shape if partitioned is None else partitioned
        self.lora_right_weight = nn.Parameter(torch.zeros(columns, lora_dim))
        self.lora_left_weight = nn.Parameter(torch.zeros(lora_dim, rows))
        self.lora_scaling = lora_scaling / lora_dim
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        self.reset_parameters()
        self.weight.requires_grad = False
        self.fuse_lora = False

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.lora_right_weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_left_weight)

    def train(self, mode: bool = True) -> LinearLayer_LoRA:
        self.lora_dropout.train(mode)
        return self

    def fuse_lora_weight(self) -> None:
        if not self.fuse_lora:
            self.weight.data += self.lora_scaling * torch.matmul(self.lora_left_weight.t(), self.lora_right_weight.t())
        self.fuse_lora = True

    def unfuse_lora_weight(self) -> None:
        if self.fuse_lora:
            self.weight.data -= self.lora_scaling * torch.matmul(self.lora_left_weight.t(), self.lora_right_weight.t())
        self.fuse_lora = False

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.fuse_lora:
            return F.linear(input, self.weight, self.bias)
        return (
            F.linear(input, self.weight, self.bias)
            + (self.lora_dropout(input) @ self.lora_right_weight @ self.lora_left_weight) * self.lora_scaling
        )


def convert_linear_layer_to_lora(
    model: nn.Module, part_module_name: str, lora_dim: int = 0, lora_scaling: float = 1, lora_dropout: float = 0
) -> int:
    """Replace every nn.Linear whose name contains `part_module_name`; returns how many."""
    names = [
        name for name, module in model.named_modules() if isinstance(module, nn.Linear) and part_module_name in name
    ]
    for name in names:
        module = model.get_submodule(name)
        assert isinstance(module, nn.Linear)  # named above as one
        lora = LinearLayer_LoRA(module.weight, lora_dim, lora_scaling, lora_dropout, module.bias)
        lora = lora.to(module.weight.device).to(module.weight.dtype)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, lora)
    return len(names)


def only_optimize_lora_parameters(model: nn.Module, force_optimize_params: tuple[str, ...] = ()) -> None:
    """Freeze everything except LoRA factors (and the named parameters, e.g. a reward head)."""
    for name, param in model.named_parameters():
        param.requires_grad = "lora_right_weight" in name or "lora_left_weight" in name or name in force_optimize_params


def make_model_gradient_checkpointing_compatible(model: nn.Module) -> nn.Module:
    """With frozen embeddings, checkpointed blocks need inputs that require grad (as DS-Chat does)."""
    # transformers' methods (or RewardModel's), which nn.Module's typing cannot see
    enable_input_require_grads = getattr(model, "enable_input_require_grads", None)
    get_input_embeddings = getattr(model, "get_input_embeddings", None)
    if enable_input_require_grads is not None:
        enable_input_require_grads()
    elif get_input_embeddings is not None:

        def make_inputs_require_grad(module: nn.Module, input: object, output: torch.Tensor) -> None:
            output.requires_grad_(True)

        get_input_embeddings().register_forward_hook(make_inputs_require_grad)
    return model
