"""Sizes of one model in one RLHF role, derived once from its catalog spec.

The actor and reference are causal LMs; the critic and reward model are
DeepSpeed-Chat RewardModels: the base transformer without its LM head plus a
scalar value head.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..catalog import ModelSpec


@dataclass(frozen=True)
class ModelFacts:
    name: str
    params: int
    """Parameters of the model in this role (LM head or value head included)."""
    matmul_params: int
    """Weights that take part in a matrix multiply per token (no embedding lookups)."""
    largest_layer_params: int
    """Largest single module's own parameters, as DeepSpeed's estimators count them."""
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    gated_mlp: bool
    has_lm_head: bool
    spec: ModelSpec
    family: str = "opt"
    dropout: bool = False
    """The config's own dropout is on (OPT's 0.1): training keeps its masks unless a flag sets it to 0."""

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim

    def lora_params(self, module_name: str, rank: int) -> int:
        """Trainable parameters DeepSpeed-Chat's LoRA adds: r * (d_in + d_out) per matched Linear."""
        if rank <= 0:
            return 0
        return rank * _lora_width(self.spec, module_name, self.has_lm_head)

    def lora_frozen_weights(self, module_name: str) -> int:
        """Base weights LoRA freezes: `LinearLayer_LoRA.__init__` sets `weight.requires_grad = False`
        on every matched Linear, with or without `--only_optimize_lora` (its bias stays trainable)."""
        return _lora_weights(self.spec, module_name, self.has_lm_head)


@lru_cache(maxsize=256)
def _lora_width(spec: ModelSpec, module_name: str, with_lm_head: bool) -> int:
    return sum(
        layer.in_features + layer.out_features
        for layer in spec.linear_layers()
        if module_name in layer.name and (with_lm_head or layer.name != "lm_head")
    )


@lru_cache(maxsize=256)
def _lora_weights(spec: ModelSpec, module_name: str, with_lm_head: bool) -> int:
    return sum(
        layer.in_features * layer.out_features
        for layer in spec.linear_layers()
        if module_name in layer.name and (with_lm_head or layer.name != "lm_head")
    )


def _lm_head(spec: ModelSpec) -> int:
    return spec.vocab_size * spec.word_embed_proj_dim


@lru_cache(maxsize=128)
def model_facts(spec: ModelSpec, role_head: str = "lm") -> ModelFacts:
    """`role_head` is "lm" for actor/reference/SFT, "value" for critic/reward/RM."""
    linear = spec.linear_layers()
    matmul = sum(layer.in_features * layer.out_features for layer in linear)
    embed = spec.vocab_size * spec.word_embed_proj_dim
    largest = max([embed] + [layer.in_features * layer.out_features for layer in linear])
    params = spec.num_params
    has_lm_head = role_head == "lm"
    if not has_lm_head:
        value_head = spec.word_embed_proj_dim if spec.family == "opt" else spec.hidden_size
        untied_head = 0 if spec.tied_embeddings else _lm_head(spec)
        params = params - untied_head + value_head
        matmul = matmul - _lm_head(spec) + value_head
    return ModelFacts(
        name=spec.name,
        params=params,
        matmul_params=matmul,
        largest_layer_params=largest,
        layers=spec.num_layers,
        hidden=spec.hidden_size,
        heads=spec.num_heads,
        kv_heads=spec.num_kv_heads,
        head_dim=spec.head_dim,
        ffn=spec.ffn_size,
        vocab=spec.vocab_size,
        gated_mlp=spec.gated_mlp,
        has_lm_head=has_lm_head,
        spec=spec,
        family=spec.family,
        dropout=float(spec.hf_config.get("dropout", 0.0) or 0.0) > 0.0,
    )
