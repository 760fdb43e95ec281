"""Cost terms of DeepSpeed-Chat's step 3 (PPO): generation, experience forwards, actor and critic training.

The actor and critic are trained (with optimizers); the reference and reward models are frozen copies, at
ZeRO-3 when their trained counterpart is, whole on every GPU otherwise; with `--enable_ema` an EMA copy of the
actor is held like the reference. Each term is its own function.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..catalog import ModelSpec
from ..plan import CostTerms
from . import _memory as mem
from . import _time as tm
from ._constants import CostConstants
from ._facts import model_facts
from ._inputs import Columns, CostInputs, per_value
from ._memory import BYTES_16BIT
from ._ppo_ema import ema_seconds, ema_states, ema_update_phase
from ._stack import forward_returns_cache, transformers_version
from ._trained import (
    CHURNED,
    RAW,
    Trained,
    accumulated_grads,
    host_peak,
    micro_seconds,
    peak,
    train_phases,
    trained,
)

PHASE_LABELS = {
    "he_gather": "generation",
    "generation": "generation",
    "exp_actor": "experience",
    "exp_ref": "experience",
    "exp_critic": "experience",
    "exp_reward": "experience",
    "exp_logprobs": "experience",
    "actor_backward": "actor_train",
    "actor_step": "actor_train",
    "critic_backward": "critic_train",
    "critic_step": "critic_train",
    "ema_update": "critic_train",
}


@dataclass
class _Ppo:
    """The candidates' PPO knobs as arrays, and what follows from them for every term."""

    cols: Columns
    actor: Trained
    critic: Trained
    ref: mem.States
    reward: mem.States
    ema: mem.States
    enable_ema: np.ndarray
    gen_bs: np.ndarray
    train_bs: np.ndarray
    prompt: np.ndarray
    answer: np.ndarray
    kernels: np.ndarray
    """The Hybrid Engine replaces generate() with DeepSpeed's inference containers."""
    pinned_z3: np.ndarray
    tp: np.ndarray
    release: np.ndarray
    gas: np.ndarray
    c: CostConstants
    transformers: str = ""
    """The target stack's transformers version ("" for the one `c` selects)."""

    @property
    def seq(self) -> np.ndarray:
        return self.prompt + self.answer

    @property
    def a_stage(self) -> np.ndarray:
        return self.actor.stage

    @property
    def ref_stage(self) -> np.ndarray:
        return np.where(self.actor.stage == 3, 3, 0)

    @property
    def reward_stage(self) -> np.ndarray:
        return np.where(self.critic.stage == 3, 3, 0)


def _setup(
    cols: Columns, actor_spec: ModelSpec, critic_spec: ModelSpec, world: int, c: CostConstants, he_kernels: bool
) -> _Ppo:
    actor_f, critic_f = model_facts(actor_spec, "lm"), model_facts(critic_spec, "value")
    offload = cols["offload"].astype(bool)
    only_lora = cols["only_optimize_lora"].astype(bool)
    a_stage, c_stage = cols["actor_zero_stage"], cols["critic_zero_stage"]
    actor = trained(
        actor_f, cols["actor_lora_dim"], cols["actor_lora_module_name"], only_lora, a_stage, offload, world, c
    )
    critic = trained(
        critic_f, cols["critic_lora_dim"], cols["critic_lora_module_name"], only_lora, c_stage, offload, world, c
    )
    ref = mem.frozen_states(
        actor_f.params, np.where(a_stage == 3, 3, 0), cols["offload_reference_model"].astype(bool), world, c
    )
    reward = mem.frozen_states(
        critic_f.params, np.where(c_stage == 3, 3, 0), cols["offload_reward_model"].astype(bool), world, c
    )
    enable_ema = cols["enable_ema"].astype(bool)
    ema = ema_states(actor, cols["offload_reference_model"].astype(bool), world, c).where(enable_ema)
    # Without inference containers DeepSpeed never replaces generate(): no pinning, no TP, no workspace.
    kernels = cols["enable_hybrid_engine"].astype(bool) & bool(he_kernels)
    pinned_z3 = kernels & (a_stage == 3) & ~cols["unpin_actor_parameters"].astype(bool)
    # TP only shards in the pinned ZeRO-3 path, where each rank generates the TP group's gathered prompts.
    tp = np.where(pinned_z3, cols["inference_tp_size"], 1).astype(float)
    return _Ppo(
        cols,
        actor,
        critic,
        ref,
        reward,
        ema,
        enable_ema,
        cols["per_device_generation_batch_size"].astype(float),
        cols["per_device_training_batch_size"].astype(float),
        cols["max_prompt_seq_len"].astype(float),
        cols["max_answer_seq_len"].astype(float),
        kernels,
        pinned_z3,
        tp,
        cols["release_inference_cache"].astype(bool),
        cols["gradient_accumulation_steps"].astype(float),
        c,
    )


def _workspace(p: _Ppo) -> tuple[np.ndarray, np.ndarray]:
    """The HE inference workspace: (KV-cache part, the rest), for the batch the kernels run."""
    f = p.actor.facts
    gathered = p.gen_bs * p.tp
    cache = np.where(p.kernels, mem.workspace_cache_bytes(f, gathered, p.seq, p.tp), 0.0)
    other = np.where(p.kernels, mem.workspace_other_bytes(f, gathered, p.seq, p.tp), 0.0)
    return cache, other


def _steady(p: _Ppo) -> dict[str, np.ndarray]:
    """What stays allocated through every phase: the four models' states, accumulated gradients, the kept
    inference workspace, the HE's fused weight copies and its containers' shared buffers. The states' `grads` are ZeRO-3's persistent 16-bit
    gradient partition (stage3.py `_setup_for_real_optimizer` allocates `grad_partitions_flat_buffer` once per
    trained engine and never frees it), kept beside the accumulated ones."""
    states = p.actor.states + p.critic.states + p.ref + p.reward + p.ema
    cache, other = _workspace(p)
    kept = p.kernels & ~p.release
    accumulating = p.gas > 1
    accumulated = accumulated_grads(p.actor, accumulating) + accumulated_grads(p.critic, accumulating)
    fused = mem.he_fused_copy_bytes(p.actor.facts, p.a_stage, p.kernels, _fused_frozen(p))
    return {
        "params": states.params,
        "optimizer": states.optimizer,
        "buffers": states.buffers,
        "grads": states.grads + accumulated,
        "kv_cache": np.where(kept, cache, 0.0),
        "inference_workspace": np.where(kept, other, 0.0),
        "inference_weights": fused + mem.he_shared_buffer_bytes(p.actor.facts, p.kernels, p.tp),
        CHURNED: accumulated,
    }


def _fused_frozen(p: _Ppo) -> np.ndarray:
    """Elements of the actor's HE-fused weights its LoRA froze (none without LoRA)."""
    f = p.actor.facts
    frozen = per_value(p.cols["actor_lora_module_name"], lambda name: mem.he_fused_frozen(f, str(name)))
    return np.where(p.cols["actor_lora_dim"] > 0, frozen, 0.0)


def _generation_phases(p: _Ppo) -> dict[str, dict[str, np.ndarray]]:
    """The HE's gather (pinned ZeRO-3 with TP) and generate(): weights it holds, logits, KV cache, workspace."""
    f = p.actor.facts
    other_params = float(f.spec.embedding_params)
    layer_params = p.actor.params_all - other_params
    tp_gathering, tp_generating = mem.he_tp_weight_bytes(
        layer_params, other_params, p.tp, p.cols["tp_gather_partition_size"].astype(float), f.layers
    )
    whole = BYTES_16BIT * p.actor.params_all
    per_layer = np.where(p.a_stage == 3, mem.zero3_gathered_bytes(f.largest_layer_params, p.c), 0.0)
    cache, other = _workspace(p)
    return {
        "he_gather": {"inference_weights": np.where(p.pinned_z3 & (p.tp > 1), tp_gathering, 0.0)},
        "generation": {
            "inference_weights": np.where(p.pinned_z3, np.where(p.tp > 1, tp_generating, whole), per_layer),
            "activations": p.gen_bs * p.tp * f.vocab * 4.0,
            "kv_cache": np.where(p.kernels, np.where(p.release, cache, 0.0), mem.kv_cache_bytes(f, p.gen_bs, p.seq)),
            "inference_workspace": np.where(p.kernels & p.release, other, 0.0),
            RAW: np.where(p.kernels & p.release, cache + other, 0.0),
        },
    }


def _experience_phases(p: _Ppo) -> dict[str, dict]:
    """The four no-grad forwards over the generated sequences, each with one live layer and its logits (a
    gathered layer at ZeRO-3), then the log-probs. ppo_trainer.py `generate_experience` keeps `output` and
    `output_ref` (16-bit logits, and the KV cache a forward without `use_cache=False` returns:
    `_stack.forward_returns_cache`; the actor is in train mode there, the reference in eval) until
    `gather_log_probs` after the reward and critic forwards (`forward_value` passes use_cache=False)."""
    a, held = p.actor.facts, _experience_outputs(p)
    none = {"activations": 0.0, "kv_cache": 0.0}
    both = {k: held["actor"][k] + held["ref"][k] for k in none}
    phases = {}
    for name, f, stage, own, before in (
        ("exp_actor", a, p.a_stage, held["actor"], none),
        ("exp_ref", a, p.ref_stage, held["ref"], held["actor"]),
        ("exp_reward", p.critic.facts, p.reward_stage, none, both),
        ("exp_critic", p.critic.facts, p.critic.stage, none, both),
    ):
        phases[name] = {
            "activations": mem.eval_activation_bytes(f, p.gen_bs, p.seq, p.c) + before["activations"],
            "kv_cache": own["kv_cache"] + before["kv_cache"],
            "params": np.where(stage == 3, mem.zero3_gathered_bytes(f.largest_layer_params, p.c), 0.0),
        }
    log_softmax = (p.c.logits_bytes_per_element_eval - BYTES_16BIT) * p.gen_bs * p.seq * a.vocab
    phases["exp_logprobs"] = {"activations": both["activations"] + log_softmax, "kv_cache": both["kv_cache"]}
    return phases


def _experience_outputs(p: _Ppo) -> dict[str, dict[str, np.ndarray]]:
    """What the actor's and the reference's experience forwards hand back and the trainer keeps."""
    a = p.actor.facts
    version = transformers_version(p.c, p.transformers)
    logits = BYTES_16BIT * p.gen_bs * p.seq * a.vocab
    cache = mem.kv_cache_bytes(a, p.gen_bs, p.seq)
    actor_ckpt = p.cols["actor_gradient_checkpointing"].astype(bool)
    out = {}
    for role, checkpointed_training in (("actor", actor_ckpt), ("ref", False)):
        kept = forward_returns_cache(version, checkpointed_training)
        out[role] = {"activations": logits, "kv_cache": np.where(kept, cache, 0.0)}
    return out


def _training_phases(p: _Ppo) -> dict[str, dict[str, np.ndarray]]:
    """Actor and critic backward and step, the actor's logits held from its step on. DeepSpeed-Chat's step-3
    scripts set actor_dropout 0.0; the critic keeps its config's dropout."""
    phases = {}
    accumulating = p.gas > 1
    for role, t, dropout in (("actor", p.actor, False), ("critic", p.critic, None)):
        ckpt = p.cols[f"{role}_gradient_checkpointing"].astype(bool)
        saved = mem.train_activation_bytes(t.facts, p.train_bs, p.seq, ckpt, p.c, dropout)
        phases[f"{role}_backward"], phases[f"{role}_step"] = train_phases(t, saved, p.c, accumulating)
    logits = actor_logits_kept_bytes(p)
    for name in ("actor_step", "critic_backward", "critic_step"):
        phases[name]["activations"] = phases[name].get("activations", 0.0) + logits
    return phases


def actor_logits_kept_bytes(p: _Ppo) -> np.ndarray:
    """ppo_trainer.py `train_rlhf` keeps `actor_prob = self.actor_model(**batch, use_cache=False).logits` (16-bit)
    referenced after the actor's backward, through its step and the critic's forward, backward and step."""
    return BYTES_16BIT * p.train_bs * p.seq * p.actor.facts.vocab


def _memory(p: _Ppo) -> dict[str, np.ndarray]:
    phases = {**_generation_phases(p), **_experience_phases(p), **_training_phases(p), **ema_update_phase(p)}
    return peak(_steady(p), phases, PHASE_LABELS, len(p.gen_bs))


def _generation_seconds(p: _Ppo, hw: tm.Hardware) -> np.ndarray:
    """One generate(): prefill, decode token by token, ZeRO-3 gathers, and the allocator's fixed costs."""
    f, c = p.actor.facts, p.c
    lm_head = float(f.vocab * f.spec.word_embed_proj_dim)
    layer_params = p.actor.params_all - float(f.spec.embedding_params)
    prefill_tokens = p.gen_bs * p.tp * p.prompt
    prefill = tm.compute_seconds(
        tm.generation_flops_per_gpu(f, prefill_tokens, p.prompt, p.tp, lm_head), prefill_tokens, f, hw, c
    ) + 2.0 * f.layers * tm.tp_allreduce_seconds(prefill_tokens * f.hidden * 2.0, p.tp, hw, c)
    context = p.prompt + p.answer / 2.0
    token = tm.decode_token_seconds(f, layer_params, lm_head, p.gen_bs, context, p.tp, p.kernels, hw, c)
    gather = tm.zero3_gather_seconds(p.actor.params_all, f.layers, p.actor.offload, hw, c)
    gathers = np.where(p.a_stage == 3, np.where(p.pinned_z3, 1.0, p.answer + 1.0), 0.0) * gather
    return prefill + p.answer * token + gathers + _cache_churn_seconds(p)


def _cache_churn_seconds(p: _Ppo) -> np.ndarray:
    """gc.collect() + empty_cache(): the HE's eval() runs them at every generation when the actor is at
    ZeRO-3 (hybrid_engine.py eval, Z3_enabled), release_inference_cache after it (and the workspace is
    taken again), and the pinned TP path once more after its gather."""
    c = p.c
    cache, other = _workspace(p)
    he = p.cols["enable_hybrid_engine"].astype(bool)
    release = np.where(p.kernels & p.release, c.empty_cache_s + (cache + other) / c.cuda_malloc_bytes_per_s, 0.0)
    tp_gather = np.where(p.pinned_z3 & (p.tp > 1), c.empty_cache_s, 0.0)
    eval_z3 = np.where(he & (p.a_stage == 3), c.empty_cache_s, 0.0)
    return release + tp_gather + eval_z3


def _experience_seconds(p: _Ppo, hw: tm.Hardware) -> np.ndarray:
    """The four forwards over the generated sequences, each overlapped with its ZeRO-3 gathers."""
    c, seq, tokens = p.c, p.seq, p.gen_bs * p.seq
    ref_offload = p.cols["offload_reference_model"].astype(bool)
    reward_offload = p.cols["offload_reward_model"].astype(bool)
    total = np.zeros_like(p.gen_bs)
    for f, params, stage, offload in (
        (p.actor.facts, p.actor.params_all, p.a_stage, p.actor.offload),
        (p.actor.facts, float(p.actor.facts.params), p.ref_stage, ref_offload),
        (p.critic.facts, p.critic.params_all, p.critic.stage, p.critic.offload),
        (p.critic.facts, float(p.critic.facts.params), p.reward_stage, reward_offload),
    ):
        compute = tm.compute_seconds(tm.forward_flops(f, tokens, seq), tokens, f, hw, c)
        comm = np.where(stage == 3, tm.zero3_gather_seconds(params, f.layers, offload & (stage == 3), hw, c), 0.0)
        total = total + tm.overlapped(compute, comm, c)
    return total


def _train_seconds(p: _Ppo, t: Trained, role: str, n_micro: np.ndarray, hw: tm.Hardware) -> np.ndarray:
    ckpt = p.cols[f"{role}_gradient_checkpointing"].astype(bool)
    tokens = p.train_bs * p.seq
    _, micro_total = micro_seconds(t, tokens, p.seq, ckpt, p.gas, hw, p.c)
    opt = tm.optimizer_step_seconds(t.params_all, t.params_trainable, t.stage, t.offload, hw, p.c)
    return n_micro * micro_total + n_micro / p.gas * opt


def _critic_load_bytes(p: _Ppo) -> np.ndarray:
    """Host bytes per rank while the critic is built: the model itself (fp32 unless zero.Init partitions it)
    and, at any stage, the whole 16-bit step-2 checkpoint every rank reads (model_utils.py create_critic_model:
    `torch.load(model_ckpt_path, map_location='cpu')` before `load_state_dict_into_model`)."""
    model = np.where(p.critic.stage == 3, 0.0, 4.0 * p.critic.params_all)
    return model + BYTES_16BIT * float(p.critic.facts.params)


def _useful_flops(p: _Ppo, n_gen: np.ndarray, n_micro: np.ndarray) -> np.ndarray:
    """Model FLOPs of one step: generation, the four experience forwards, and actor and critic training."""
    a, cr, seq = p.actor.facts, p.critic.facts, p.seq
    generation = tm.forward_flops(a, p.gen_bs * p.prompt, p.prompt) + p.answer * tm.forward_flops(
        a, p.gen_bs, p.prompt + p.answer / 2.0
    )
    experience = 2.0 * (tm.forward_flops(a, p.gen_bs * seq, seq) + tm.forward_flops(cr, p.gen_bs * seq, seq))
    useful = n_gen * (generation + experience)
    for t in (p.actor, p.critic):
        useful = useful + n_micro * tm.forward_flops(t.facts, p.train_bs * seq, seq) * t.useful_flops_factor()
    return useful


def score_ppo(x: CostInputs) -> CostTerms:
    """Step 3's cost terms: generation, experience, actor and critic training."""
    cols, cluster, world = x.cols, x.cluster, x.cluster.world_size
    p = dataclasses.replace(
        _setup(cols, x.model, x.critic_model, world, x.constants, x.he_kernels), transformers=x.transformers_version
    )
    n_gen = cols["generation_batches"].astype(float)
    n_micro = n_gen * np.ceil(p.gen_bs / p.train_bs) * cols["ppo_epochs"]
    phases = {
        "generation": n_gen * _generation_seconds(p, x.hw),
        "experience": n_gen * _experience_seconds(p, x.hw),
        "actor_train": _train_seconds(p, p.actor, "actor", n_micro, x.hw),
        # main.py runs moving_average after each micro-step's critic update, before the next micro-step.
        "critic_train": _train_seconds(p, p.critic, "critic", n_micro, x.hw) + n_micro * ema_seconds(p, x.hw),
    }
    actor_construction = np.where(p.a_stage == 3, 0.0, 4.0 * p.actor.params_all)
    states = p.actor.states + p.critic.states + p.ref + p.reward + p.ema
    samples = p.gen_bs * n_gen * world
    return CostTerms(
        memory=_memory(p),
        # the critic is built after the actor, reference and EMA, whose offloaded states are on the host by then
        host_peak_bytes=host_peak(cluster, states.host + _critic_load_bytes(p), actor_construction, x.constants),
        phases=phases,
        samples=samples,
        tokens=samples * p.seq,
        flops=_useful_flops(p, n_gen, n_micro),
    )
