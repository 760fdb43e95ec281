"""Model specs: Hugging Face shapes as data, with parameter counts derived analytically.

Counting parameters from the config (instead of building the model) keeps the
cost model free of torch; the tests check every count against transformers.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, cast

from dstune.errors import UserInputError

ModelFamily = Literal["opt", "llama", "qwen2", "mistral"]
SUPPORTED_MODEL_TYPES: tuple[ModelFamily, ...] = ("opt", "llama", "qwen2", "mistral")

_OPT_POSITION_OFFSET = 2
"""OPT's learned position table has two extra rows (fairseq padding legacy)."""


@dataclass(frozen=True, kw_only=True)
class LinearLayer:
    """One nn.Linear of the causal LM, named as in `named_modules()` (LoRA targets these)."""

    name: str
    in_features: int
    out_features: int


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Shapes of a decoder-only causal LM, enough to size memory, FLOPs and LoRA."""

    name: str
    aliases: tuple[str, ...] = ()
    family: ModelFamily
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_size: int
    vocab_size: int
    max_positions: int
    word_embed_proj_dim: int
    """Width of the token embedding; differs from hidden_size only for OPT-350m."""
    tied_embeddings: bool
    gated_mlp: bool
    """Llama-style MLP with three matrices (gate, up, down) instead of two."""
    qkv_bias: bool
    linear_bias: bool
    """Every Linear inside the layers has a bias (OPT)."""
    out_proj_bias: bool = False
    """Attention output projection has a bias without the MLP having one (Llama `attention_bias`)."""
    final_layer_norm: bool = True
    """OPT models with post-LN (opt-350m) have no final LayerNorm."""
    hf_config: Mapping[str, Any] = field(default_factory=lambda: types.MappingProxyType({}), repr=False, hash=False)
    """The Hugging Face config values, read-only; `hf_config_object()` builds the real config."""

    @property
    def model_type(self) -> str:
        return str(self.hf_config.get("model_type", self.family))

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def params_per_layer(self) -> int:
        linears = sum(_linear_params(layer, bias) for layer, bias in zip(self._layer_linears(0), self._layer_biases()))
        return linears + self._layer_norm_params()

    @property
    def embedding_params(self) -> int:
        """Everything outside the repeated layers: embeddings, projections, final norm, head."""
        total = self.vocab_size * self.word_embed_proj_dim
        if self.family == "opt":
            total += (self.max_positions + _OPT_POSITION_OFFSET) * self.hidden_size
            if self.word_embed_proj_dim != self.hidden_size:
                total += 2 * self.word_embed_proj_dim * self.hidden_size
        if self.final_layer_norm:
            total += self._norm_params(self.hidden_size)
        if not self.tied_embeddings:
            total += self.word_embed_proj_dim * self.vocab_size
        return total

    @property
    def num_params(self) -> int:
        """Unique parameters of the `*ForCausalLM` model, tied weights counted once."""
        return self.num_layers * self.params_per_layer + self.embedding_params

    def linear_layers(self) -> tuple[LinearLayer, ...]:
        """Every nn.Linear in module order, the set DeepSpeed-Chat's LoRA matches by substring."""
        layers: list[LinearLayer] = []
        prefix = "model.decoder" if self.family == "opt" else "model"
        if self.family == "opt" and self.word_embed_proj_dim != self.hidden_size:
            layers.append(
                LinearLayer(
                    name=f"{prefix}.project_out",
                    in_features=self.hidden_size,
                    out_features=self.word_embed_proj_dim,
                )
            )
            layers.append(
                LinearLayer(
                    name=f"{prefix}.project_in",
                    in_features=self.word_embed_proj_dim,
                    out_features=self.hidden_size,
                )
            )
        for index in range(self.num_layers):
            layers.extend(self._layer_linears(index))
        layers.append(LinearLayer(name="lm_head", in_features=self.word_embed_proj_dim, out_features=self.vocab_size))
        return tuple(layers)

    def hf_config_object(self) -> Any:
        """A transformers `PretrainedConfig`, to build the model with random weights."""
        from transformers import AutoConfig

        rest = {k: v for k, v in self.hf_config.items() if k != "model_type"}
        return AutoConfig.for_model(self.model_type, **rest)

    def _layer_linears(self, index: int) -> tuple[LinearLayer, ...]:
        h = self.hidden_size
        if self.family == "opt":
            base = f"model.decoder.layers.{index}"
            shapes = [
                ("self_attn.k_proj", h, h),
                ("self_attn.v_proj", h, h),
                ("self_attn.q_proj", h, h),
                ("self_attn.out_proj", h, h),
                ("fc1", h, self.ffn_size),
                ("fc2", self.ffn_size, h),
            ]
        else:
            base = f"model.layers.{index}"
            shapes = [
                ("self_attn.q_proj", h, self.q_size),
                ("self_attn.k_proj", h, self.kv_size),
                ("self_attn.v_proj", h, self.kv_size),
                ("self_attn.o_proj", self.q_size, h),
                ("mlp.gate_proj", h, self.ffn_size),
                ("mlp.up_proj", h, self.ffn_size),
                ("mlp.down_proj", self.ffn_size, h),
            ]
        return tuple(LinearLayer(name=f"{base}.{n}", in_features=i, out_features=o) for n, i, o in shapes)

    def _layer_biases(self) -> tuple[bool, ...]:
        if self.family == "opt":
            return (self.linear_bias,) * 6
        qkv = self.qkv_bias or self.linear_bias
        out = self.out_proj_bias or self.linear_bias
        return (qkv, qkv, qkv, out) + (self.linear_bias,) * 3

    def _norm_params(self, width: int) -> int:
        return 2 * width if self.family == "opt" else width

    def _layer_norm_params(self) -> int:
        return 2 * self._norm_params(self.hidden_size)


def _linear_params(layer: LinearLayer, bias: bool) -> int:
    return layer.in_features * layer.out_features + (layer.out_features if bias else 0)


class _SharedShape(TypedDict):
    """The ModelSpec fields every family reads the same way from a Hugging Face config."""

    name: str
    aliases: tuple[str, ...]
    family: ModelFamily
    hidden_size: int
    num_layers: int
    num_heads: int
    vocab_size: int
    max_positions: int
    hf_config: Mapping[str, Any]


def spec_from_hf_config(name: str, config: Mapping[str, Any], aliases: tuple[str, ...] = ()) -> ModelSpec:
    """Read the shape fields of a Hugging Face config dict; refuse families we cannot model."""
    model_type = _require_supported(name, config.get("model_type"))
    c = dict(config)
    hidden = int(c["hidden_size"])
    heads = int(c["num_attention_heads"])
    common = _SharedShape(
        name=name,
        aliases=tuple(aliases),
        family=model_type,
        hidden_size=hidden,
        num_layers=int(c["num_hidden_layers"]),
        num_heads=heads,
        vocab_size=int(c["vocab_size"]),
        max_positions=int(c["max_position_embeddings"]),
        hf_config=types.MappingProxyType(c),
    )
    if model_type == "opt":
        return ModelSpec(
            **common,
            num_kv_heads=heads,
            head_dim=hidden // heads,
            ffn_size=int(c["ffn_dim"]),
            word_embed_proj_dim=int(c.get("word_embed_proj_dim") or hidden),
            tied_embeddings=bool(c.get("tie_word_embeddings", True)),
            gated_mlp=False,
            qkv_bias=bool(c.get("enable_bias", True)),
            linear_bias=bool(c.get("enable_bias", True)),
            final_layer_norm=bool(c.get("do_layer_norm_before", True)) and not c.get("_remove_final_layer_norm", False),
        )
    attention_bias = bool(c.get("attention_bias", False))
    mlp_bias = bool(c.get("mlp_bias", False))
    if mlp_bias and not attention_bias:
        raise UserInputError(f"model '{name}' has mlp_bias without attention_bias, which dstune cannot size")
    return ModelSpec(
        **common,
        num_kv_heads=int(c.get("num_key_value_heads") or heads),
        head_dim=int(c.get("head_dim") or hidden // heads),
        ffn_size=int(c["intermediate_size"]),
        word_embed_proj_dim=hidden,
        tied_embeddings=bool(c.get("tie_word_embeddings", False)),
        gated_mlp=True,
        qkv_bias=model_type == "qwen2" or attention_bias,
        linear_bias=attention_bias and mlp_bias,
        out_proj_bias=attention_bias,
    )


def _require_supported(name: str, model_type: Any) -> ModelFamily:
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UserInputError(
            f"model '{name}' has model_type {model_type!r}; supported types: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    return cast(ModelFamily, model_type)
