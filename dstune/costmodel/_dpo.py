"""Cost terms of DPO (DeepSpeed-Chat step2_dpo): a trained policy plus a frozen reference copy.

Per micro-batch of `m` pairs the policy runs forward and backward on 2m sequences and the
reference model runs forward on the same 2m (main.py calls it under no_grad). The reference
is the policy's checkpoint without LoRA, at ZeRO-3 when the policy is (gathered layer by
layer, parameters in host memory with `offload_reference_model`) and whole on every GPU
otherwise. The step is the policy's optimizer step, as in SFT.
"""

from __future__ import annotations

import numpy as np

from ..plan import CostTerms
from . import _memory as mem
from . import _time as tm
from ._estimate import CostInputs, _host_peak, _micro_seconds, _peak, _train_phases, _trained
from ._facts import model_facts


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
    policy = _trained(
        f, cols["lora_dim"], cols["lora_module_name"], cols["only_optimize_lora"].astype(bool), stage, offload, world, c
    )
    ref = mem.frozen_states(f.params, ref_stage, ref_offload, world, c)
    states = policy.states + ref
    checkpointing = cols["gradient_checkpointing"].astype(bool)
    backward, step_extra = _train_phases(
        policy, stage, mem.train_activation_bytes(f, sequences, seq, checkpointing, c), c
    )
    reference = {
        "activations": mem.eval_activation_bytes(f, sequences, seq, c),
        "params": np.where(ref_stage == 3, mem.zero3_gathered_bytes(f.largest_layer_params, c), 0.0),
    }
    steady = {"params": states.params, "grads": states.grads, "optimizer": states.optimizer, "buffers": states.buffers}
    peak = _peak(
        steady,
        {"reference": reference, "backward": backward, "step": step_extra},
        {"reference": "reference", "backward": "train", "step": "train"},
        len(micro),
    )

    tokens = sequences * seq
    fwd, micro_total = _micro_seconds(policy, tokens, seq, checkpointing, stage, offload, hw, c)
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
        memory=peak,
        host_peak_bytes=_host_peak(cluster, states.host, construction, c),
        phases=phases,
        samples=micro * gas * world,
        tokens=tokens * gas * world,
        flops=useful,
    )
