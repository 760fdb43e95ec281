"""Measure what a transformers model's training forward saves for backward, on the CPU.

`saved_bytes` runs a real model built from a config (random weights) in train mode under
`torch.autograd.graph.saved_tensors_hooks` and sums the distinct storages autograd keeps that are not
parameters. `layer_coefficients` differences 1- and 3-layer models over a grid of shapes and solves for
the per-token bytes of data/activations.json (per hidden unit, FFN unit, KV unit, head, and the eager
path's per-score bytes). torch and transformers are imported lazily: the cost model itself never runs them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

GRID = (
    # hidden, heads, kv_heads, ffn, seq, batch
    (256, 4, 4, 1024, 64, 2),
    (256, 4, 4, 1024, 128, 2),
    (512, 8, 8, 1024, 64, 2),
    (256, 8, 8, 2048, 64, 2),
    (512, 8, 2, 1024, 64, 1),
    (256, 4, 4, 512, 96, 3),
)
"""Shapes that separate every term; kv_heads < heads only where the family has grouped-query attention."""
TERMS = ("hidden", "ffn", "kv", "heads", "token", "scores")
"""Per token: bytes per hidden unit, FFN unit, K/V unit (kv_heads*head_dim), head, the token; and per
attention score per token (heads * seq: the s^2 tensors eager attention keeps)."""
VOCAB = 512


def _build(
    family: str,
    attn: str,
    layers: int,
    hidden: int,
    heads: int,
    kv_heads: int,
    ffn: int,
    dropout: float,
    vocab: int,
    dtype: str = "bfloat16",
) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

    if family == "opt":
        config: Any = OPTConfig(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            ffn_dim=ffn,
            vocab_size=vocab,
            word_embed_proj_dim=hidden,
            max_position_embeddings=1024,
            dropout=dropout,
            attention_dropout=0.0,
        )
        cls: Any = OPTForCausalLM
    else:
        config = LlamaConfig(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            intermediate_size=ffn,
            vocab_size=vocab,
            max_position_embeddings=1024,
            attention_dropout=dropout,
        )
        cls = LlamaForCausalLM
    config._attn_implementation = attn  # transformers before 4.36 has eager attention only and ignores it
    torch.manual_seed(0)
    return cls(config).to(getattr(torch, dtype)).train()


def saved_bytes(model: Any, batch: int, seq: int, labels: bool = True) -> int:
    """Bytes of the distinct non-parameter storages autograd saves in one training forward."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: Any) -> Any:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen.setdefault(storage.data_ptr(), storage.nbytes())
        return t

    ids = torch.randint(0, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(0))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=ids if labels else None, use_cache=False)
    return sum(seen.values())


def layer_bytes(family: str, attn: str, shape: tuple[int, ...], dropout: float = 0.0, dtype: str = "bfloat16") -> float:
    """One decoder layer's saved bytes at `shape` (hidden, heads, kv_heads, ffn, seq, batch)."""
    hidden, heads, kv_heads, ffn, seq, batch = shape
    one, three = (
        saved_bytes(_build(family, attn, n, hidden, heads, kv_heads, ffn, dropout, VOCAB, dtype), batch, seq)
        for n in (1, 3)
    )
    return (three - one) / 2.0


def design_row(shape: tuple[int, ...]) -> list[float]:
    hidden, heads, kv_heads, ffn, seq, _ = shape
    return [hidden, ffn, kv_heads * (hidden // heads), heads, 1.0, heads * seq]


def layer_coefficients(
    family: str, attn: str, dropout: float = 0.0, dtype: str = "bfloat16", grouped_kv: bool = True
) -> dict[str, float]:
    """Per-token bytes of one layer, solved from `GRID` (least squares; exact to a byte on this stack).
    `grouped_kv` False: the family (OPT) or the transformers version (before 4.31) has no grouped KV heads."""
    grouped = grouped_kv and family != "opt"
    shapes = [s for s in GRID if grouped or s[1] == s[2]]
    x = np.array([design_row(s) for s in shapes])
    y = np.array([layer_bytes(family, attn, s, dropout, dtype) / (s[4] * s[5]) for s in shapes])
    keep = [i for i, t in enumerate(TERMS) if grouped or t != "kv"]
    solved, *_ = np.linalg.lstsq(x[:, keep], y, rcond=None)
    out = dict.fromkeys(TERMS, 0.0)
    out.update({TERMS[i]: round(float(v), 3) for i, v in zip(keep, solved)})
    return out


def logits_bytes_per_element(family: str, attn: str = "sdpa", dtype: str = "bfloat16") -> float:
    """Bytes saved per logit element by a forward with labels (transformers' own loss), from two vocabularies."""
    hidden, heads, kv_heads, ffn, seq, batch = GRID[0]
    small, large = (
        saved_bytes(_build(family, attn, 1, hidden, heads, kv_heads, ffn, 0.0, v, dtype), batch, seq)
        for v in (VOCAB, 2 * VOCAB)
    )
    return (large - small) / (batch * seq * VOCAB)


def dropout_mask_bytes(dtype: str = "bfloat16") -> int:
    """Bytes per element of what this device's F.dropout saves for backward. On the CPU, aten's `dropout` takes
    `_dropout_impl` (the fused kernel only for CUDA/XPU tensors: `is_fused_kernel_acceptable`) and saves its
    `noise` in the input's dtype."""
    import torch

    seen: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen.append(t.element_size())
        return t

    x = torch.ones(8, 8, dtype=getattr(torch, dtype), requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        torch.nn.functional.dropout(x, 0.1, training=True)
    return max(seen)
