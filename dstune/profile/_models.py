"""Build the models of a trial the way DeepSpeed-Chat's create_hf_model / create_critic_model do.

Differences, all deliberate: weights are random (`from_config`; throughput does
not depend on their values) and no tokenizer is loaded, so the embedding is not
resized to the tokenizer's length (catalog vocab sizes already are the models').
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def hf_config(model: Mapping[str, Any]) -> Any:
    """A transformers config from a spec's `hf_config` values, pad = eos as DeepSpeed-Chat sets it."""
    from transformers import AutoConfig

    values = dict(model)
    model_type = values.pop("model_type")
    config = AutoConfig.for_model(model_type, **values)
    config.pad_token_id = config.eos_token_id
    config.end_token_id = config.eos_token_id
    return config


@contextlib.contextmanager
def zero3_construction(ds_config: Mapping[str, Any]) -> Iterator[None]:
    """Under ZeRO-3, make transformers build inside `deepspeed.zero.Init` (partitioned at creation).

    DeepSpeed-Chat gets this by holding an `HfDeepSpeedConfig` while the model is
    built; transformers keeps only a weak reference, so it must stay alive here.
    """
    if ds_config["zero_optimization"]["stage"] != 3:
        yield
        return
    try:
        import accelerate  # noqa: F401 - transformers' HfDeepSpeedConfig is built on accelerate's
    except ImportError as error:
        raise RuntimeError(
            "ZeRO-3 construction uses transformers' HfDeepSpeedConfig, which needs the "
            "'accelerate' package: pip install 'accelerate>=1.1.0'"
        ) from error
    from transformers.integrations.deepspeed import HfDeepSpeedConfig

    dschf = HfDeepSpeedConfig(dict(ds_config))
    try:
        yield
    finally:
        del dschf


def build_causal_lm(model: Mapping[str, Any], ds_config: Mapping[str, Any]) -> nn.Module:
    """The actor / reference / SFT model: `AutoModelForCausalLM.from_config` with random weights."""
    from transformers import AutoModelForCausalLM

    config = hf_config(model)
    with zero3_construction(ds_config):
        return AutoModelForCausalLM.from_config(config)


def build_reward_model(
    model: Mapping[str, Any], ds_config: Mapping[str, Any], num_padding_at_beginning: int
) -> RewardModel:
    """Critic / reward / step-2 model: the `AutoModel` base plus a scalar value head."""
    from transformers import AutoModel

    config = hf_config(model)
    with zero3_construction(ds_config):
        base = AutoModel.from_config(config)
        return RewardModel(base, pad_token_id=config.pad_token_id, num_padding_at_beginning=num_padding_at_beginning)


class RewardModel(nn.Module):
    """DeepSpeed-Chat's RewardModel (dschat/utils/model/reward_model.py), same maths and names."""

    def __init__(self, base_model: PreTrainedModel, *, pad_token_id: int, num_padding_at_beginning: int = 0) -> None:
        super().__init__()
        self.config = base_model.config
        self.num_padding_at_beginning = num_padding_at_beginning
        width = getattr(self.config, "word_embed_proj_dim", None) or self.config.hidden_size
        # The head takes the dtype of the transformer under it: built under ZeRO-3's zero.Init the base
        # is already in the training dtype, and DeepSpeed does not cast a zero.Init model again (an
        # eval-only ZeRO-3 engine would otherwise multiply bf16 activations by an fp32 head).
        dtype = next(base_model.parameters()).dtype
        self.v_head = nn.Linear(width, 1, bias=False, dtype=dtype)
        self.rwtransformer = base_model
        self.PAD_ID = pad_token_id

    def gradient_checkpointing_enable(self) -> None:
        self.rwtransformer.gradient_checkpointing_enable()

    def gradient_checkpointing_disable(self) -> None:
        self.rwtransformer.gradient_checkpointing_disable()

    def enable_input_require_grads(self) -> None:
        self.rwtransformer.enable_input_require_grads()

    def _values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, use_cache: bool) -> torch.Tensor:
        hidden = self.rwtransformer(input_ids, attention_mask=attention_mask, use_cache=use_cache)[0]
        return self.v_head(hidden).squeeze(-1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, use_cache: bool = False
    ) -> dict[str, torch.Tensor]:
        """Pairwise ranking loss; the first half of the batch is chosen, the second rejected."""
        rewards = self._values(input_ids, attention_mask, use_cache)
        bs = input_ids.shape[0] // 2
        seq_len = input_ids.shape[1]
        chosen_ids, rejected_ids = input_ids[:bs], input_ids[bs:]
        chosen_rewards, rejected_rewards = rewards[:bs], rewards[bs:]
        loss: torch.Tensor | float = 0.0
        chosen_scores, rejected_scores = [], []
        for i in range(bs):
            chosen_id, rejected_id = chosen_ids[i], rejected_ids[i]
            chosen_reward, rejected_reward = chosen_rewards[i], rejected_rewards[i]
            c_ind = self._end_index(chosen_id, seq_len)
            divergence = (chosen_id != rejected_id).nonzero()
            if len(divergence) == 0:
                end_ind = rejected_reward.size(-1)
                divergence_ind = end_ind - 1
                r_ind = c_ind
            else:
                r_ind = self._end_index(rejected_id, seq_len)
                end_ind = max(c_ind, r_ind)
                divergence_ind = int(divergence[0])
            c_truncated = chosen_reward[divergence_ind:end_ind]
            r_truncated = rejected_reward[divergence_ind:end_ind]
            chosen_scores.append(chosen_reward[c_ind - 1])
            rejected_scores.append(rejected_reward[r_ind - 1])
            loss = loss + -torch.nn.functional.logsigmoid(c_truncated - r_truncated).mean()
        assert isinstance(loss, torch.Tensor)  # the batch holds at least one pair
        return {
            "loss": loss / bs,
            "chosen_mean_scores": torch.stack(chosen_scores),
            "rejected_mean_scores": torch.stack(rejected_scores),
        }

    def _end_index(self, ids: torch.Tensor, seq_len: int) -> int:
        pads = (ids == self.PAD_ID).nonzero()
        return int(pads[self.num_padding_at_beginning]) if len(pads) > self.num_padding_at_beginning else seq_len

    def forward_value(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        return_value_only: bool = False,
        prompt_length: int = 0,
        use_cache: bool = False,
    ) -> Any:
        """Per-token values, or with `prompt_length` also the value at each answer's last token."""
        values = self._values(input_ids, attention_mask, use_cache)
        if return_value_only:
            return values
        assert prompt_length > 1, "prompt_length must be greater than 1 to help select the end score"
        seq_len = input_ids.shape[1]
        scores = []
        for i in range(values.size(0)):
            pads = (input_ids[i, prompt_length:] == self.PAD_ID).nonzero()
            c_ind = int(pads[0]) + prompt_length if len(pads) > 0 else seq_len
            scores.append(values[i, c_ind - 1])
        return {"values": values, "chosen_end_scores": torch.stack(scores)}
