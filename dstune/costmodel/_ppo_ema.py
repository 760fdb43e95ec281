"""The EMA copy of DeepSpeed-Chat's step 3 (`--enable_ema`): its states, its update's peak and its time."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from ..catalog import ModelSpec
from . import _memory as mem
from . import _time as tm
from ._constants import CostConstants
from ._memory import BYTES_16BIT, PERSISTENCE_THRESHOLD
from ._trained import Trained

if TYPE_CHECKING:
    from ._ppo import _Ppo


def ema_states(actor: Trained, offload_ref: np.ndarray, world: int, c: CostConstants) -> mem.States:
    """The EMA copy (rlhf_engine.py `_init_ema`): the actor built again, LoRA-converted like it, under the
    reference model's eval config (`get_eval_ds_config(offload_reference_model, dtype, stage)`, stage 3 only
    with a ZeRO-3 actor): 16-bit weights with no optimizer, whole on every GPU or partitioned at ZeRO-3, and on
    the host with offload_reference_model at ZeRO-3."""
    return mem.frozen_states(actor.params_all, np.where(actor.stage == 3, 3, 0), offload_ref, world, c)


@lru_cache(maxsize=256)
def _partitioned_tensors(spec: ModelSpec, module_name: str, rank: int) -> int:
    """Actor tensors ZeRO-3 partitions (over `PERSISTENCE_THRESHOLD` elements): the Linear weights (a tied
    LM head is the embedding), the embedding tables, and the LoRA factors of each adapted Linear."""
    linear = [x for x in spec.linear_layers() if not (x.name == "lm_head" and spec.tied_embeddings)]
    tables = [spec.vocab_size * spec.word_embed_proj_dim]
    if spec.family == "opt":
        tables.append((spec.max_positions + 2) * spec.hidden_size)  # OPT offsets positions by 2
    sizes = [x.in_features * x.out_features for x in linear] + tables
    if rank > 0:
        adapted = [x for x in linear if module_name in x.name and x.name != "lm_head"]
        sizes += [rank * x.in_features for x in adapted] + [rank * x.out_features for x in adapted]
    return sum(size > PERSISTENCE_THRESHOLD for size in sizes)


def ema_update_phase(p: _Ppo) -> dict[str, dict[str, np.ndarray]]:
    """moving_average (dschat/utils/utils.py) after each PPO micro-step: `torch.lerp` makes one parameter's
    new value before copying it in; at ZeRO-3 that parameter and its EMA twin are gathered whole first."""
    largest = BYTES_16BIT * float(p.actor.facts.largest_layer_params)
    held = np.where(p.a_stage == 3, 3.0, 1.0) * largest
    return {"ema_update": {"params": np.where(p.enable_ema, held, 0.0)}}


def ema_seconds(p: _Ppo, hw: tm.Hardware) -> np.ndarray:
    """One moving_average over the actor: lerp reads both copies and writes a new tensor that copy_ reads and
    writes again (five 16-bit passes over the actor's parameters on every GPU, whole at any stage). At ZeRO-3
    each partitioned actor tensor and its EMA twin are gathered together (one GatheredParameters call each),
    fetched from the host first where offloaded (the actor with offload, the EMA with offload_reference_model)."""
    params = p.actor.params_all
    passes = 5.0 * BYTES_16BIT * params / hw.hbm_bytes_per_s
    spec = p.actor.facts.spec
    pairs = zip(p.cols["actor_lora_module_name"], p.cols["actor_lora_dim"])
    calls = np.array([_partitioned_tensors(spec, str(m), int(r)) for m, r in pairs], dtype=float)
    offloaded = p.actor.offload.astype(float) + p.cols["offload_reference_model"].astype(float)
    host = offloaded * BYTES_16BIT * params / hw.world / hw.host_link_bytes_per_s
    gather = tm.allgather_seconds(2.0 * BYTES_16BIT * params, hw) + calls * p.c.collective_latency_s + host
    return np.where(p.enable_ema, passes + np.where(p.a_stage == 3, gather, 0.0), 0.0)
