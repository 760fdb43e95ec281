"""Cost terms of DPO (DeepSpeed-Chat step2_dpo): a trained policy plus a frozen reference copy.

Per micro-batch of `m` pairs the policy runs forward and backward on 2m sequences and the
reference model runs forward on the same 2m. main.py runs the policy's forward first and the reference's
(under no_grad) before the policy's backward, so the policy's saved activations are alive during the
reference forward. The reference is the policy's checkpoint without LoRA, at ZeRO-3 when the policy is
(gathered layer by layer, parameters in host memory with `offload_reference_model`) and whole on every
GPU otherwise. The step is the policy's optimizer step, as in SFT.
"""

from __future__ import annotations

import numpy as np

from ..plan import CostTerms
from . import _memory as mem
from . import _time as tm
from ._constants import CostConstants
from ._facts import ModelFacts, model_facts
from ._inputs import CostInputs
from ._memory import BYTES_16BIT
from ._stack import forward_returns_cache, transformers_version
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


def score_dpo(x: CostInputs) -> CostTerms:
    cols, cluster, hw, c = x.cols, x.cluster, x.hw, x.constants
    f = model_facts(x.model, "lm")
    world = cluster.world_size
    micro = cols["per_device_train_batch_size"].astype(float)
    gas = cols["gradient_accumulation_steps"].astype(float)
    seq = cols["max_seq_len"].astype(float)
    stage = cols["zero_stage"]
    offload = cols["offload"].astype(bool)
    ref_stage = np.where(stage == 3, 3, 0)
    ref_offload = cols["offload_reference_model"].astype(bool) & (ref_stage == 3)
    sequences = 2.0 * micro
    only_lora = cols["only_optimize_lora"].astype(bool)
    policy = trained(f, cols["lora_dim"], cols["lora_module_name"], only_lora, stage, offload, world, c)
    ref = mem.frozen_states(f.params, ref_stage, ref_offload, world, c)
    states = policy.states + ref
    checkpointing = cols["gradient_checkpointing"].astype(bool)
    accumulating = gas > 1
    saved = mem.train_activation_bytes(f, sequences, seq, checkpointing, c)
    backward, step_extra = train_phases(policy, saved, c, accumulating)
    backward["params"] = backward["params"] + zero3_reused_bytes(policy, checkpointing, c)
    reference = reference_forward_phase(f, sequences, seq, saved, ref_stage, c)
    kept = reference_outputs(f, sequences, seq, c, x.transformers_version)
    reference["kv_cache"] = kept["kv_cache"]  # its logits are in the forward's own (eval_activation_bytes)
    for phase in (backward, step_extra):
        for k, v in kept.items():
            phase[k] = phase.get(k, 0.0) + v
    steady = steady_states(states)
    steady[CHURNED] = np.where(
        accumulating, mem.grad_accumulated_bytes(policy.params_trainable, stage, offload, world), 0.0
    )
    steady["grads"] = steady["grads"] + steady[CHURNED]
    memory = peak(
        steady,
        {"reference": reference, "backward": backward, "step": step_extra},
        {"reference": "reference", "backward": "train", "step": "train"},
        len(micro),
    )

    tokens = sequences * seq
    fwd, micro_total = micro_seconds(policy, tokens, seq, checkpointing, gas, hw, c)
    ref_compute = tm.compute_seconds(tm.forward_flops(f, tokens, seq), tokens, f, hw, c)
    ref_comm = np.where(ref_stage == 3, tm.zero3_gather_seconds(float(f.params), f.layers, ref_offload, hw, c), 0.0)
    opt = tm.optimizer_step_seconds(policy.params_all, policy.params_trainable, stage, offload, hw, c)
    phases = {
        "forward": gas * fwd,
        "reference": gas * tm.overlapped(ref_compute, ref_comm, c),
        "backward": gas * (micro_total - fwd),
        "step": opt,
    }
    useful = gas * tm.forward_flops(f, tokens, seq) * (policy.useful_flops_factor() + 1.0)
    construction = np.where(stage == 3, 0.0, 2.0 * 4.0 * policy.params_all)
    return CostTerms(
        memory=memory,
        host_peak_bytes=host_peak(cluster, states.host, construction, c),
        phases=phases,
        samples=micro * gas * world,
        tokens=tokens * gas * world,
        flops=useful,
    )


def reference_forward_phase(
    f: ModelFacts,
    sequences: np.ndarray,
    seq: np.ndarray,
    policy_saved: np.ndarray,
    ref_stage: np.ndarray,
    c: CostConstants,
) -> dict[str, np.ndarray]:
    """The reference forward's peak: its own live layer and logits on top of the policy's saved activations
    (the policy's graph is alive until its backward), and a gathered layer when the reference is at ZeRO-3."""
    return {
        "activations": policy_saved + mem.eval_activation_bytes(f, sequences, seq, c),
        "params": np.where(ref_stage == 3, mem.zero3_gathered_bytes(f.largest_layer_params, c), 0.0),
    }


def reference_outputs(
    f: ModelFacts, sequences: np.ndarray, seq: np.ndarray, c: CostConstants, version: str = ""
) -> dict[str, np.ndarray]:
    """step2_dpo_finetuning/main.py runs `ref_outputs = ref_model(**batch)` without use_cache=False and keeps
    it until the next micro-batch: its 16-bit logits and the KV cache its forward returns (the reference is in
    eval mode, so every transformers returns one: `_stack.forward_returns_cache`) live through the policy's
    backward and step."""
    cache = forward_returns_cache(transformers_version(c, version), False)
    return {
        "activations": BYTES_16BIT * sequences * seq * f.vocab,
        "kv_cache": np.where(cache, mem.kv_cache_bytes(f, sequences, seq), 0.0),
    }
