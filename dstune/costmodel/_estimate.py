"""Score candidate plans: memory by component, time by phase, throughput, MFU, feasibility.

`estimate_table` takes a column table (knob name -> numpy array, one entry per
candidate) so a whole search space is scored in one vectorised pass;
`estimate` scores one Plan through the same code. The GPU peak is the largest, over the
phases of a step (the Hybrid Engine's gather, generation, each experience forward, each
trained model's backward and optimizer step), of the steady states plus what that phase holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..catalog import ClusterSpec, ModelSpec
from ..errors import UserInputError
from ..plan import CostTerms, Plan, step_strategy
from . import _memory as mem
from . import _time as tm
from ._constants import DEFAULT_CONSTANTS, CostConstants
from ._facts import ModelFacts, model_facts
from ._memory import BYTES_16BIT

Columns = Mapping[str, np.ndarray]

GPU_COMPONENTS = (
    "params",
    "grads",
    "optimizer",
    "activations",
    "kv_cache",
    "inference_weights",
    "inference_workspace",
    "other",
)
_PHASE_COMPONENTS = GPU_COMPONENTS[:-1] + ("buffers",)
"""What one phase holds; `buffers` (ZeRO buckets) are reported inside `other`."""


def plans_to_columns(plans: Sequence[Plan]) -> dict[str, np.ndarray]:
    """Column table of knob values from plan objects (all of one step)."""
    names = [f.name for f in dataclasses.fields(plans[0])]
    return {name: np.array([getattr(p, name) for p in plans]) for name in names}


def _per_value(column: np.ndarray, fn: Any) -> np.ndarray:
    """Apply a scalar function once per distinct value of a column (strings, dtypes)."""
    if len(column) and (column == column[0]).all():  # the common case; np.unique sorts strings slowly
        return np.full(len(column), fn(column[0]), dtype=float)
    values, inverse = np.unique(column, return_inverse=True)
    return np.array([fn(v) for v in values], dtype=float)[inverse.reshape(-1)]


def _lora(f: ModelFacts, rank: np.ndarray, module_name: np.ndarray) -> np.ndarray:
    width = _per_value(module_name, lambda name: f.lora_params(str(name), 1))
    return rank * width


def _peak_flops(cluster: ClusterSpec, dtype: np.ndarray) -> np.ndarray:
    def peak(d: str) -> float:
        try:
            return cluster.gpu.peak_tflops(str(d)) * 1e12
        except UserInputError:
            return float("nan")

    return _per_value(dtype, peak)


@dataclass
class _Trained:
    """One trained role's parameter counts and states for every candidate."""

    facts: ModelFacts
    params_all: np.ndarray
    params_trainable: np.ndarray
    weight_grad_share: np.ndarray
    """Share of the matmul weights that get a weight gradient (0 with only_optimize_lora)."""
    states: mem.States

    def useful_flops_factor(self) -> np.ndarray:
        """Model FLOPs of one trained micro-batch, in forwards: forward + activation grads + weight grads."""
        return 2.0 + self.weight_grad_share


def _trained(
    f: ModelFacts,
    rank: np.ndarray,
    module: np.ndarray,
    only_lora: np.ndarray,
    stage: np.ndarray,
    offload: np.ndarray,
    world: int,
    c: CostConstants,
) -> _Trained:
    lora = _lora(f, rank, module)
    params_all = f.params + lora
    trainable, share = _trainable(f, rank, module, only_lora)
    states = mem.trained_states(params_all, trainable, stage, offload, world, c)
    return _Trained(f, params_all, trainable, share, states)


def _trainable(
    f: ModelFacts, rank: np.ndarray, module: np.ndarray, only_lora: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(trainable parameters, share of matmul weights with a weight gradient) as DeepSpeed-Chat leaves them:
    LoRA freezes each adapted Linear's weight; only_optimize_lora freezes everything but the adapters."""
    adapted = rank > 0
    lora = _lora(f, rank, module)
    frozen = _per_value(module, lambda name: f.lora_frozen_weights(str(name)))
    trainable = np.where(adapted, np.where(only_lora, lora, f.params + lora - frozen), f.params)
    share = np.where(adapted, np.where(only_lora, 0.0, 1.0 - frozen / f.matmul_params), 1.0)
    return trainable.astype(float), share.astype(float)


def _zeros(n: np.ndarray) -> np.ndarray:
    return np.zeros_like(np.asarray(n, dtype=float))


def _train_phases(
    t: _Trained, stage: np.ndarray, activations: np.ndarray, c: CostConstants, own_grads: np.ndarray | bool = True
) -> tuple[dict, dict]:
    """(backward, step) extras of one trained model on top of the steady states.

    Backward: activations, the ZeRO-3 gathered layer with its 16-bit grad (DeepSpeed's 4 x largest layer),
    ZeRO 1-2 reduce buckets, stage-0 16-bit grads. Step: stage-0 grads plus FP16_Optimizer's fp32 copies.
    `own_grads` False: the stage-0 16-bit grads are already counted as steady (accumulation spans phases).
    """
    z3 = stage == 3
    gathered = np.where(z3, mem.zero3_gathered_bytes(t.facts.largest_layer_params, c), 0.0)
    grad16 = np.where(own_grads, mem.stage0_grad_bytes(t.params_trainable, stage), 0.0)
    backward = {
        "activations": activations,
        "params": gathered,
        "grads": grad16 + np.where(z3, 2.0 * t.facts.largest_layer_params, 0.0),
        "buffers": mem.zero12_reduce_bucket_bytes(stage, c),
    }
    step = {"grads": grad16 + mem.stage0_step_bytes(t.params_trainable, stage)}
    return backward, step


def _peak(
    steady: dict[str, np.ndarray], phases: dict[str, dict[str, np.ndarray]], labels: dict[str, str], n_rows: int
) -> dict[str, np.ndarray]:
    """Per candidate, the phase whose extra bytes on top of the steady ones are largest (the steady bytes
    are the same in every phase), with the components at that peak."""
    names = list(phases)
    extras = np.stack(
        [np.broadcast_to(sum(np.asarray(v, dtype=float) for v in phases[p].values()), (n_rows,)) for p in names]
    )
    worst = np.argmax(extras, axis=0)
    out: dict[str, np.ndarray] = {}
    for k in _PHASE_COMPONENTS:
        value = np.broadcast_to(np.asarray(steady.get(k, 0.0), dtype=float), (n_rows,)).copy()
        for i, p in enumerate(names):
            if k in phases[p]:
                value += np.where(worst == i, phases[p][k], 0.0)
        out[k] = value
    out["peak_phase"] = np.array([labels[p] for p in names], dtype=object)[worst]
    return out


def _micro_seconds(
    t: _Trained,
    tokens: np.ndarray,
    seq: np.ndarray,
    checkpointing: np.ndarray,
    stage: np.ndarray,
    offload: np.ndarray,
    hw: tm.Hardware,
    c: CostConstants,
) -> tuple[np.ndarray, np.ndarray]:
    """(forward, forward+backward with exposed communication) of one training micro-batch."""
    fwd = tm.compute_seconds(tm.forward_flops(t.facts, tokens, seq), tokens, t.facts, hw, c)
    total = fwd * (1.0 + tm.train_backward_factor(t.weight_grad_share, checkpointing))
    comm = tm.zero_micro_comm_seconds(t.params_all, t.params_trainable, stage, offload, t.facts.layers, hw, c)
    return fwd, tm.overlapped(total, comm, c)


def _host_peak(
    cluster: ClusterSpec, host_per_gpu: np.ndarray, construction_per_rank: np.ndarray, c: CostConstants
) -> np.ndarray:
    """Per node: every rank's process, plus the larger of model construction (each rank builds
    non-ZeRO-3 models whole in fp32 on the host) and the offloaded states."""
    gpn = cluster.gpus_per_node
    return gpn * (c.host_bytes_per_rank + np.maximum(construction_per_rank, host_per_gpu))


def _score_sft_rm(
    cols: Columns, spec: ModelSpec, cluster: ClusterSpec, hw: tm.Hardware, c: CostConstants, pairwise: bool
) -> CostTerms:
    f = model_facts(spec, "value" if pairwise else "lm")
    world = cluster.world_size
    micro = cols["per_device_train_batch_size"].astype(float)
    gas = cols["gradient_accumulation_steps"].astype(float)
    seq = cols["max_seq_len"].astype(float)
    stage = cols["zero_stage"]
    offload = cols["offload"].astype(bool)
    sequences = micro * (2.0 if pairwise else 1.0)
    t = _trained(
        f, cols["lora_dim"], cols["lora_module_name"], cols["only_optimize_lora"].astype(bool), stage, offload, world, c
    )
    checkpointing = cols["gradient_checkpointing"].astype(bool)
    activations = mem.train_activation_bytes(f, sequences, seq, checkpointing, c)
    backward, step_extra = _train_phases(t, stage, activations, c)
    steady = {
        "params": t.states.params,
        "grads": t.states.grads,
        "optimizer": t.states.optimizer,
        "buffers": t.states.buffers,
    }
    peak = _peak(steady, {"backward": backward, "step": step_extra}, {"backward": "train", "step": "train"}, len(micro))
    tokens = sequences * seq
    fwd, micro_total = _micro_seconds(t, tokens, seq, checkpointing, stage, offload, hw, c)
    opt = tm.optimizer_step_seconds(t.params_all, t.params_trainable, stage, offload, hw, c)
    phases = {"forward": gas * fwd, "backward": gas * (micro_total - fwd), "step": opt}
    useful = gas * tm.forward_flops(f, tokens, seq) * t.useful_flops_factor()
    construction = np.where(stage == 3, 0.0, 4.0 * t.params_all)
    return CostTerms(
        memory=peak,
        host_peak_bytes=_host_peak(cluster, t.states.host, construction, c),
        phases=phases,
        samples=micro * gas * world,
        tokens=tokens * gas * world,
        flops=useful,
    )


def _score_ppo(
    cols: Columns,
    actor_spec: ModelSpec,
    critic_spec: ModelSpec,
    cluster: ClusterSpec,
    hw: tm.Hardware,
    c: CostConstants,
    he_kernels: bool,
) -> CostTerms:
    actor_f = model_facts(actor_spec, "lm")
    critic_f = model_facts(critic_spec, "value")
    world = cluster.world_size
    gen_bs = cols["per_device_generation_batch_size"].astype(float)
    n_rows = len(gen_bs)
    train_bs = cols["per_device_training_batch_size"].astype(float)
    prompt = cols["max_prompt_seq_len"].astype(float)
    answer = cols["max_answer_seq_len"].astype(float)
    seq = prompt + answer
    a_stage, c_stage = cols["actor_zero_stage"], cols["critic_zero_stage"]
    offload = cols["offload"].astype(bool)
    only_lora = cols["only_optimize_lora"].astype(bool)
    he = cols["enable_hybrid_engine"].astype(bool)
    pinned = ~cols["unpin_actor_parameters"].astype(bool)
    release = cols["release_inference_cache"].astype(bool)
    a_ckpt = cols["actor_gradient_checkpointing"].astype(bool)
    c_ckpt = cols["critic_gradient_checkpointing"].astype(bool)
    gas = cols["gradient_accumulation_steps"].astype(float)
    ref_offload = cols["offload_reference_model"].astype(bool)
    reward_offload = cols["offload_reward_model"].astype(bool)

    # Without inference containers DeepSpeed never replaces generate(): no pinning, no TP, no workspace.
    kernels = he & bool(he_kernels)
    pinned_z3 = kernels & (a_stage == 3) & pinned
    # TP only shards in the pinned ZeRO-3 path, where each rank generates the TP group's gathered prompts.
    tp = np.where(pinned_z3, cols["inference_tp_size"], 1).astype(float)
    gathered_bs = gen_bs * tp

    actor = _trained(
        actor_f, cols["actor_lora_dim"], cols["actor_lora_module_name"], only_lora, a_stage, offload, world, c
    )
    critic = _trained(
        critic_f, cols["critic_lora_dim"], cols["critic_lora_module_name"], only_lora, c_stage, offload, world, c
    )
    ref_stage = np.where(a_stage == 3, 3, 0)
    reward_stage = np.where(c_stage == 3, 3, 0)
    ref = mem.frozen_states(actor_f.params, ref_stage, ref_offload, world, c)
    reward = mem.frozen_states(critic_f.params, reward_stage, reward_offload, world, c)
    states = actor.states + critic.states + ref + reward

    lm_head = float(actor_f.vocab * actor_spec.word_embed_proj_dim)
    other_params = float(actor_spec.embedding_params)
    layer_params = actor.params_all - other_params
    ws_cache = np.where(kernels, mem.workspace_cache_bytes(actor_f, gathered_bs, seq, tp), 0.0)
    ws_other = np.where(kernels, mem.workspace_other_bytes(actor_f, gathered_bs, seq, tp), 0.0)
    kept = kernels & ~release
    accumulating = gas > 1
    steady = {
        "params": states.params,
        "optimizer": states.optimizer,
        "buffers": states.buffers,
        "grads": states.grads
        + np.where(
            accumulating,
            mem.stage0_grad_bytes(actor.params_trainable, a_stage)
            + mem.stage0_grad_bytes(critic.params_trainable, c_stage),
            0.0,
        ),
        "kv_cache": np.where(kept, ws_cache, 0.0),
        "inference_workspace": np.where(kept, ws_other, 0.0),
    }

    whole = BYTES_16BIT * actor.params_all
    tp_gathering, tp_generating = mem.he_tp_weight_bytes(
        layer_params, other_params, tp, cols["tp_gather_partition_size"].astype(float), actor_f.layers
    )
    per_layer = np.where(a_stage == 3, mem.zero3_gathered_bytes(actor_f.largest_layer_params, c), 0.0)
    gen_weights = np.where(pinned_z3, np.where(tp > 1, tp_generating, whole), per_layer)
    phases: dict[str, dict[str, np.ndarray]] = {
        "he_gather": {"inference_weights": np.where(pinned_z3 & (tp > 1), tp_gathering, 0.0)},
        "generation": {
            "inference_weights": gen_weights,
            "activations": gathered_bs * actor_f.vocab * 4.0,
            "kv_cache": np.where(kernels, np.where(release, ws_cache, 0.0), mem.kv_cache_bytes(actor_f, gen_bs, seq)),
            "inference_workspace": np.where(kernels & release, ws_other, 0.0),
        },
    }
    for name, f, stage in (
        ("exp_actor", actor_f, a_stage),
        ("exp_ref", actor_f, ref_stage),
        ("exp_critic", critic_f, c_stage),
        ("exp_reward", critic_f, reward_stage),
    ):
        phases[name] = {
            "activations": mem.eval_activation_bytes(f, gen_bs, seq, c),
            "params": np.where(stage == 3, mem.zero3_gathered_bytes(f.largest_layer_params, c), 0.0),
        }
    for role, t, stage, ckpt in (("actor", actor, a_stage, a_ckpt), ("critic", critic, c_stage, c_ckpt)):
        backward, step_extra = _train_phases(
            t, stage, mem.train_activation_bytes(t.facts, train_bs, seq, ckpt, c), c, own_grads=~accumulating
        )
        phases[f"{role}_backward"], phases[f"{role}_step"] = backward, step_extra
    labels = {
        "he_gather": "generation",
        "generation": "generation",
        "exp_actor": "experience",
        "exp_ref": "experience",
        "exp_critic": "experience",
        "exp_reward": "experience",
        "actor_backward": "actor_train",
        "actor_step": "actor_train",
        "critic_backward": "critic_train",
        "critic_step": "critic_train",
    }
    peak = _peak(steady, phases, labels, n_rows)

    prefill_tokens = gathered_bs * prompt
    prefill = tm.compute_seconds(
        tm.generation_flops_per_gpu(actor_f, prefill_tokens, prompt, tp, lm_head), prefill_tokens, actor_f, hw, c
    ) + 2.0 * actor_f.layers * tm.tp_allreduce_seconds(prefill_tokens * actor_f.hidden * 2.0, tp, hw, c)
    token = tm.decode_token_seconds(actor_f, layer_params, lm_head, gen_bs, prompt + answer / 2.0, tp, kernels, hw, c)
    gather = tm.zero3_gather_seconds(actor.params_all, actor_f.layers, offload, hw, c)
    gathers = np.where(a_stage == 3, np.where(pinned_z3, 1.0, answer + 1.0), 0.0) * gather
    cache_churn = np.where(
        kernels & release, c.empty_cache_s + (ws_cache + ws_other) / c.cuda_malloc_bytes_per_s, 0.0
    ) + np.where(pinned_z3 & (tp > 1), c.empty_cache_s, 0.0)
    generation = prefill + answer * token + gathers + cache_churn

    a_fwd_gen = tm.forward_flops(actor_f, gen_bs * prompt, prompt)
    experience = np.zeros_like(gen_bs)
    for f, params, stage, role_offload in (
        (actor_f, actor.params_all, a_stage, offload),
        (actor_f, float(actor_f.params), ref_stage, ref_offload),
        (critic_f, critic.params_all, c_stage, offload),
        (critic_f, float(critic_f.params), reward_stage, reward_offload),
    ):
        compute = tm.compute_seconds(tm.forward_flops(f, gen_bs * seq, seq), gen_bs * seq, f, hw, c)
        comm = np.where(stage == 3, tm.zero3_gather_seconds(params, f.layers, role_offload & (stage == 3), hw, c), 0.0)
        experience = experience + tm.overlapped(compute, comm, c)

    n_gen = cols["generation_batches"].astype(float)
    n_micro = n_gen * np.ceil(gen_bs / train_bs) * cols["ppo_epochs"]
    n_opt = n_micro / gas
    train_tokens = train_bs * seq
    phase_s = {"generation": n_gen * generation, "experience": n_gen * experience}
    useful = n_gen * (a_fwd_gen + answer * tm.forward_flops(actor_f, gen_bs, prompt + answer / 2.0))
    useful = useful + n_gen * 2.0 * (
        tm.forward_flops(actor_f, gen_bs * seq, seq) + tm.forward_flops(critic_f, gen_bs * seq, seq)
    )
    for name, t, stage, ckpt in (("actor_train", actor, a_stage, a_ckpt), ("critic_train", critic, c_stage, c_ckpt)):
        _, micro_total = _micro_seconds(t, train_tokens, seq, ckpt, stage, offload, hw, c)
        opt = tm.optimizer_step_seconds(t.params_all, t.params_trainable, stage, offload, hw, c)
        phase_s[name] = n_micro * micro_total + n_opt * opt
        useful = useful + n_micro * tm.forward_flops(t.facts, train_tokens, seq) * t.useful_flops_factor()

    construction = np.maximum(
        np.where(a_stage == 3, 0.0, 4.0 * actor.params_all), np.where(c_stage == 3, 0.0, 4.0 * critic.params_all)
    )
    samples = gen_bs * n_gen * world
    return CostTerms(
        memory=peak,
        host_peak_bytes=_host_peak(cluster, states.host, construction, c),
        phases=phase_s,
        samples=samples,
        tokens=samples * seq,
        flops=useful,
    )


@dataclass(frozen=True)
class CostInputs:
    """What a step's cost function (its strategy's `cost_function`) scores: a column table of
    candidate plans for one model pair on one cluster, on hardware figures for their dtype."""

    cols: Columns
    model: ModelSpec
    critic_model: ModelSpec
    """The second model of a step that has one (PPO's critic); the actor otherwise."""
    cluster: ClusterSpec
    hw: tm.Hardware
    constants: CostConstants
    he_kernels: bool


def score_sft(x: CostInputs) -> CostTerms:
    """Step 1's cost terms."""
    return _score_sft_rm(x.cols, x.model, x.cluster, x.hw, x.constants, pairwise=False)


def score_rm(x: CostInputs) -> CostTerms:
    """Step 2's cost terms: the value-head model on chosen and rejected sequences."""
    return _score_sft_rm(x.cols, x.model, x.cluster, x.hw, x.constants, pairwise=True)


def score_ppo(x: CostInputs) -> CostTerms:
    """Step 3's cost terms: generation, experience, actor and critic training."""
    return _score_ppo(x.cols, x.model, x.critic_model, x.cluster, x.hw, x.constants, x.he_kernels)


def estimate_table(
    step: str,
    cols: Columns,
    model: ModelSpec,
    cluster: ClusterSpec,
    *,
    critic_model: ModelSpec | None = None,
    constants: CostConstants = DEFAULT_CONSTANTS,
    he_kernels: bool = True,
) -> dict[str, np.ndarray]:
    """Score every candidate row. Returns flat columns: mem_*, gpu_peak_bytes, host_peak_bytes,
    time_*, step_s, samples_per_s, tokens_per_s, mfu, fits_gpu (under the card), within_headroom (under the
    card less the headroom a production pick keeps), fits_host, feasible (fits the card and the host)."""
    c = constants
    first = next(iter(cols.values()))
    n_rows = len(first)
    peak = _peak_flops(cluster, cols["dtype"])
    hw = dataclasses.replace(tm.Hardware.of(cluster, "fp16", c), peak_flops=peak)
    raw = step_strategy(step).cost()(CostInputs(cols, model, critic_model or model, cluster, hw, c, he_kernels))
    out: dict[str, np.ndarray] = {}
    memory = raw["memory"]
    for name in GPU_COMPONENTS[:-1]:
        out[f"mem_{name}"] = np.broadcast_to(np.asarray(memory.get(name, 0.0), dtype=float), (n_rows,)).copy()
    subtotal = sum(out[f"mem_{name}"] for name in GPU_COMPONENTS[:-1]) + memory["buffers"] + c.cuda_context_bytes
    out["mem_other"] = memory["buffers"] + c.cuda_context_bytes + c.memory_overhead_fraction * subtotal
    out["gpu_peak_bytes"] = subtotal + c.memory_overhead_fraction * subtotal
    out["host_peak_bytes"] = np.asarray(raw["host_peak_bytes"], dtype=float)
    out["peak_phase"] = memory["peak_phase"]
    step_s = np.zeros(n_rows)
    for name, seconds in raw["phases"].items():
        out[f"time_{name}"] = np.asarray(seconds, dtype=float)
        step_s = step_s + out[f"time_{name}"]
    out["step_s"] = step_s
    out["samples_per_s"] = raw["samples"] / step_s
    out["tokens_per_s"] = raw["tokens"] / step_s
    out["mfu"] = raw["flops"] / (step_s * peak)
    out["fits_gpu"] = out["gpu_peak_bytes"] <= cluster.gpu.memory_bytes
    out["within_headroom"] = out["gpu_peak_bytes"] <= cluster.gpu.memory_bytes * (1.0 - c.headroom_fraction)
    out["fits_host"] = out["host_peak_bytes"] <= cluster.host_memory_per_node_bytes
    out["feasible"] = out["fits_gpu"] & out["fits_host"] & np.isfinite(peak)
    return out
