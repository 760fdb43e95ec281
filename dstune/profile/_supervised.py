"""Steps 1 and 2: SFT (causal-LM loss) and RM (pairwise ranking loss) on one DeepSpeed engine.

Phases: `forward`, `backward` and `step` (the engine's optimizer step), summed
over `gradient_accumulation_steps` micro-batches, as DeepSpeed-Chat's step-1 and
step-2 loops call them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from ._engines import Adapters, apply_lora, train_engine
from ._inputs import TrialInputs, num_padding_at_beginning, synthetic_ids
from ._measure import PhaseTimer
from ._models import build_causal_lm, build_reward_model

SFT_LEARNING_RATE = 1e-3
RM_LEARNING_RATE = 5e-5


@dataclass
class SupervisedStep:
    """Step 1: causal LM loss on one DeepSpeed engine."""

    pairwise: ClassVar[bool] = False
    inputs: TrialInputs
    notes: list[str] = field(default_factory=list)
    he_kernels: bool | None = None

    def __post_init__(self) -> None:
        p, cfg = self.inputs.plan, self.inputs.ds_configs["model"]
        model: nn.Module
        force: tuple[str, ...]
        if self.pairwise:
            hf = self.inputs.model["hf_config"]
            model = build_reward_model(hf, cfg, num_padding_at_beginning(hf))
            force = ("v_head.weight",)
        else:
            model = build_causal_lm(self.inputs.model["hf_config"], cfg)
            force = ()
        apply_lora(model, Adapters(p["lora_dim"], p["lora_module_name"], p["only_optimize_lora"], force))
        lr = RM_LEARNING_RATE if self.pairwise else SFT_LEARNING_RATE
        weight_decay = 0.1 if self.pairwise else 0.0
        self.engine, optimizer = train_engine(model, cfg, offload=p["offload"], lr=lr, weight_decay=weight_decay)
        self.notes.append(f"optimizer: {optimizer}")
        if p["gradient_checkpointing"]:
            self.engine.module.gradient_checkpointing_enable()
        self.engine.train()
        self.micro = p["per_device_train_batch_size"]
        self.accumulation = p["gradient_accumulation_steps"]
        self.seq = p["max_seq_len"]
        generator = torch.Generator().manual_seed(self.inputs.seed)
        rows = 2 * self.micro if self.pairwise else self.micro
        hf = self.inputs.model["hf_config"]
        self.ids = synthetic_ids(hf, rows, self.seq, self.inputs.device, generator)
        if self.pairwise:  # rejected answers diverge from the chosen ones halfway
            half = self.seq // 2
            self.ids[self.micro :, :half] = self.ids[: self.micro, :half]
        self.mask = torch.ones_like(self.ids)
        self.samples_per_step_per_rank = self.micro * self.accumulation
        self.tokens_per_step_per_rank = rows * self.seq * self.accumulation

    def run(self, timer: PhaseTimer) -> None:
        for _ in range(self.accumulation):
            with timer.phase("forward"):
                if self.pairwise:
                    loss = self.engine(self.ids, attention_mask=self.mask, use_cache=False)["loss"]
                else:
                    loss = self.engine(
                        input_ids=self.ids, attention_mask=self.mask, labels=self.ids, use_cache=False
                    ).loss
            with timer.phase("backward"):
                self.engine.backward(loss)
            with timer.phase("step"):
                self.engine.step()


@dataclass
class RewardModelStep(SupervisedStep):
    """Step 2: pairwise ranking loss on chosen and rejected sequences (2 rows per sample)."""

    pairwise: ClassVar[bool] = True
