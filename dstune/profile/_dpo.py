"""DPO (DeepSpeed-Chat step2_dpo main.py): policy engine plus a frozen reference engine.

Phases: `forward` (policy log-probs of chosen and rejected answers), `reference` (the same
under no_grad on the reference model), `backward` and `step`, summed over
`gradient_accumulation_steps` micro-batches as main.py's loop runs them. The loss is DPO's
sigmoid loss with main.py's default beta and label smoothing; the answer mask starts where
chosen and rejected first differ, found per pair as main.py does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ._engines import Adapters, apply_lora, eval_engine, train_engine
from ._inputs import TrialInputs, synthetic_ids
from ._measure import PhaseTimer
from ._models import build_causal_lm

LEARNING_RATE = 5e-5
"""The shipped OPT DPO scripts' --learning_rate."""
WEIGHT_DECAY = 0.1
BETA = 0.1
LABEL_SMOOTHING = 0.0


def sequence_log_probs(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over answer tokens of log p(token | prefix); `mask` marks the answer tokens of `ids`."""
    targets = (ids * mask)[:, 1:]
    per_token = torch.gather(logits[:, :-1, :].log_softmax(-1), 2, targets.unsqueeze(2)).squeeze(2)
    return (per_token * mask[:, 1:]).sum(-1)


def answer_mask(ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """Non-pad tokens from the first position where a pair's chosen and rejected answers differ."""
    pairs = ids.shape[0] // 2
    mask = (ids != pad_token_id).int()
    for i in range(pairs):
        differ = (ids[i] != ids[i + pairs]).nonzero().squeeze(-1)
        start = int(differ[0]) if len(differ) else 0
        mask[i, :start] = 0
        mask[i + pairs, :start] = 0
    return mask


def dpo_loss(policy: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Chosen rows first, rejected second (as the pairwise collator stacks them)."""
    pairs = policy.shape[0] // 2
    margin = (policy[:pairs] - reference[:pairs]) - (policy[pairs:] - reference[pairs:])
    logits = BETA * margin
    loss = -F.logsigmoid(logits) * (1 - LABEL_SMOOTHING) - F.logsigmoid(-logits) * LABEL_SMOOTHING
    return loss.mean(0)


@dataclass
class DpoStep:
    inputs: TrialInputs
    notes: list[str] = field(default_factory=list)
    he_kernels: bool | None = None

    def __post_init__(self) -> None:
        p, configs, hf = self.inputs.plan, self.inputs.ds_configs, self.inputs.model["hf_config"]
        torch.manual_seed(self.inputs.seed)  # the reference starts as the policy's own weights, as in main.py
        policy = build_causal_lm(hf, configs["model"])
        apply_lora(policy, Adapters(p["lora_dim"], p["lora_module_name"], p["only_optimize_lora"]))
        self.engine, optimizer = train_engine(
            policy, configs["model"], offload=p["offload"], lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY
        )
        self.notes.append(f"optimizer: {optimizer}")
        torch.manual_seed(self.inputs.seed)
        self.reference = eval_engine(build_causal_lm(hf, configs["ref"]), configs["ref"])
        self.reference.eval()
        if p["gradient_checkpointing"]:
            self.engine.module.gradient_checkpointing_enable()
        self.engine.train()
        self.micro = p["per_device_train_batch_size"]
        self.accumulation = p["gradient_accumulation_steps"]
        seq = p["max_seq_len"]
        generator = torch.Generator().manual_seed(self.inputs.seed)
        self.ids = synthetic_ids(hf, 2 * self.micro, seq, self.inputs.device, generator)
        half = seq // 2  # rejected answers diverge from the chosen ones halfway
        self.ids[self.micro :, :half] = self.ids[: self.micro, :half]
        self.attention = torch.ones_like(self.ids)
        self.pad_token_id = int(hf.get("pad_token_id") or 0)
        self.samples_per_step_per_rank = self.micro * self.accumulation
        self.tokens_per_step_per_rank = 2 * self.micro * seq * self.accumulation

    def run(self, timer: PhaseTimer) -> None:
        for _ in range(self.accumulation):
            with timer.phase("forward"):
                mask = answer_mask(self.ids, self.pad_token_id)
                logits = self.engine(input_ids=self.ids, attention_mask=self.attention, use_cache=False).logits
                policy = sequence_log_probs(logits, self.ids, mask)
            with timer.phase("reference"), torch.no_grad():
                ref_logits = self.reference(input_ids=self.ids, attention_mask=self.attention).logits
                reference = sequence_log_probs(ref_logits, self.ids, mask)
            with timer.phase("backward"):
                self.engine.backward(dpo_loss(policy, reference))
            with timer.phase("step"):
                self.engine.step()
