"""Saved activations come from what this stack's forward keeps (issue 19 s.1.3): the shipped per-token bytes
(costmodel/data/activations.json) are re-measured here with saved-tensor hooks on real transformers models of
shapes the table was not solved on, and compared with the cost model's per-layer bytes."""

import json

import numpy as np
import pytest

from dstune.catalog import load_model
from dstune.catalog._models import spec_from_hf_config
from dstune.costmodel import DEFAULT_CONSTANTS, model_facts
from dstune.costmodel import _activation_probe as probe
from dstune.costmodel import _activations as acts
from dstune.costmodel import _memory as mem

SHAPE = (384, 6, 2, 640, 80, 2)
"""hidden, heads, kv_heads (LLaMA; OPT uses heads), ffn, seq, batch: none of the measured grid."""


def _facts(family: str):
    hidden, heads, kv_heads, ffn, _, _ = SHAPE
    config = {"hidden_size": hidden, "num_attention_heads": heads, "num_hidden_layers": 2, "vocab_size": 512}
    if family == "opt":
        config |= {"model_type": "opt", "ffn_dim": ffn, "word_embed_proj_dim": hidden, "do_layer_norm_before": True}
    else:
        config |= {"model_type": "llama", "num_key_value_heads": kv_heads, "intermediate_size": ffn}
    return model_facts(spec_from_hf_config(f"probe-{family}", {**config, "max_position_embeddings": 1024}))


def _shape(family: str) -> tuple[int, ...]:
    hidden, heads, kv_heads, ffn, seq, batch = SHAPE
    return (hidden, heads, heads if family == "opt" else kv_heads, ffn, seq, batch)


def test_the_table_was_measured_on_the_installed_transformers():
    import transformers

    installed = json.loads(acts.ACTIVATIONS_FILE.read_text())["stacks"]["installed"]
    assert installed["transformers"] == transformers.__version__, "rerun scripts/measure_activations.py"


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_cost_model_layer_bytes_equal_a_fresh_sdpa_measurement(family):
    """transformers' default attention (SDPA) keeps no s^2 tensor; dropout 0 as DeepSpeed-Chat's step-3 sets."""
    measured = probe.layer_bytes(family, "sdpa", _shape(family))
    _, _, _, _, seq, batch = SHAPE
    ours = mem.layer_activation_bytes(_facts(family), np.array([batch]), np.array([seq]), DEFAULT_CONSTANTS)[0]
    assert ours == pytest.approx(measured, rel=1e-3)


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_eager_attention_keeps_the_scores_the_table_says(family):
    f = _facts(family)
    _, _, _, _, seq, batch = SHAPE
    measured = probe.layer_bytes(family, "eager", _shape(family))
    table = acts.layer_bytes(
        family, f.hidden, f.ffn, f.kv_width, f.heads, np.array([batch * seq]), np.array([seq]), 0.0, False, "eager"
    )[0]
    assert table == pytest.approx(measured, rel=1e-3)
    assert acts.coefficients(family, 0.0, False, "eager")["scores"] > 0.0


def test_opt_dropout_keeps_its_masks_unless_the_script_turns_it_off():
    """OPT's configs set dropout 0.1; DeepSpeed-Chat's step-3 scripts pass --actor_dropout 0.0."""
    _, _, _, _, seq, batch = SHAPE
    measured = probe.layer_bytes("opt", "sdpa", _shape("opt"), dropout=0.1)
    f = _facts("opt")
    ours = mem.layer_activation_bytes(
        f, np.array([batch]), np.array([seq]), DEFAULT_CONSTANTS, dropout=True, device="cpu"
    )[0]
    assert ours == pytest.approx(measured, rel=1e-3)
    opt13 = model_facts(load_model("opt-1.3b"))
    assert opt13.dropout
    b, s, no = np.array([4.0]), np.array([512.0]), np.array([False])
    assert (
        mem.train_activation_bytes(opt13, b, s, no, DEFAULT_CONSTANTS, False)[0]
        < (mem.train_activation_bytes(opt13, b, s, no, DEFAULT_CONSTANTS)[0])
    )


def test_transformers_loss_keeps_fp32_logits():
    """SFT passes labels: transformers' loss casts the logits to fp32 and keeps them (4 bytes per element)."""
    measured = probe.logits_bytes_per_element("opt")
    assert measured == pytest.approx(acts.hf_loss_logits_bytes("opt", 0.0)) == pytest.approx(4.0)
