"""Cost terms of DeepSpeed-Chat's step 1 (SFT) and step 2 (reward model): one trained model."""

from __future__ import annotations

import numpy as np

from ..plan import CostTerms
from . import _memory as mem
from . import _time as tm
from ._facts import model_facts
from ._inputs import CostInputs
from ._trained import (
    CHURNED,
    host_peak,
    micro_seconds,
    peak,
    steady_states,
    train_phases,
    trained,
    zero3_reused_bytes,
)


def _score(x: CostInputs, pairwise: bool) -> CostTerms:
    cols, cluster, hw, c = x.cols, x.cluster, x.hw, x.constants
    f = model_facts(x.model, "value" if pairwise else "lm")
    world = cluster.world_size
    micro = cols["per_device_train_batch_size"].astype(float)
    gas = cols["gradient_accumulation_steps"].astype(float)
    seq = cols["max_seq_len"].astype(float)
    stage = cols["zero_stage"]
    offload = cols["offload"].astype(bool)
    sequences = micro * (2.0 if pairwise else 1.0)
    only_lora = cols["only_optimize_lora"].astype(bool)
    t = trained(f, cols["lora_dim"], cols["lora_module_name"], only_lora, stage, offload, world, c)
    checkpointing = cols["gradient_checkpointing"].astype(bool)
    activations = mem.train_activation_bytes(f, sequences, seq, checkpointing, c)
    if not pairwise:
        activations = activations + mem.hf_loss_upcast_bytes(f, sequences, seq, c)
    accumulating = gas > 1
    backward, step_extra = train_phases(t, activations, c, accumulating)
    backward["params"] = backward["params"] + zero3_reused_bytes(t, checkpointing, c)
    steady = steady_states(t.states)
    steady[CHURNED] = np.where(accumulating, mem.grad_accumulated_bytes(t.params_trainable, stage, offload, world), 0.0)
    steady["grads"] = steady["grads"] + steady[CHURNED]
    memory = peak(
        steady,
        {"backward": backward, "step": step_extra},
        dict.fromkeys(("backward", "step"), "train"),
        len(micro),
    )
    tokens = sequences * seq
    fwd, micro_total = micro_seconds(t, tokens, seq, checkpointing, gas, hw, c)
    opt = tm.optimizer_step_seconds(t.params_all, t.params_trainable, stage, offload, hw, c)
    phases = {"forward": gas * fwd, "backward": gas * (micro_total - fwd), "step": opt}
    useful = gas * tm.forward_flops(f, tokens, seq) * t.useful_flops_factor()
    construction = np.where(stage == 3, 0.0, 4.0 * t.params_all)
    return CostTerms(
        memory=memory,
        host_peak_bytes=host_peak(cluster, t.states.host, construction, c),
        phases=phases,
        samples=micro * gas * world,
        tokens=tokens * gas * world,
        flops=useful,
    )


def score_sft(x: CostInputs) -> CostTerms:
    """Step 1's cost terms: transformers' own loss on the LM's logits."""
    return _score(x, pairwise=False)


def score_rm(x: CostInputs) -> CostTerms:
    """Step 2's cost terms: the value-head model on chosen and rejected sequences."""
    return _score(x, pairwise=True)
