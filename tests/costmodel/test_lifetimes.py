"""Issue 19 s.1: what DeepSpeed 0.19.8 and DeepSpeed-Chat hold, and when, read from their own code and runs:
the Hybrid Engine's fused copies, gradient lifetimes at ZeRO 1-3, ZeRO-1's reduction inside the backward,
the HE's eval() at ZeRO-3, the adapters' GEMMs and DPO's reference forward over the policy's graph."""

import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.costmodel import DEFAULT_CONSTANTS, estimate, model_facts
from dstune.costmodel import _memory as mem
from dstune.costmodel._trained import lora_forward_flops, trained
from dstune.plan import make_plan

A100 = load_gpu("A100-80G")
EIGHT = make_cluster(A100, 8)
OPT67, OPT350 = load_model("opt-6.7b"), load_model("opt-350m")
C = DEFAULT_CONSTANTS


def _ppo(**values):
    base = {
        "actor_zero_stage": 2,
        "critic_zero_stage": 2,
        "per_device_generation_batch_size": 4,
        "per_device_training_batch_size": 4,
        "enable_hybrid_engine": True,
        "actor_gradient_checkpointing": True,
    }
    return make_plan("ppo", {**base, **values})


# --- the Hybrid Engine's fused copies ------------------------------------------------------------------------


SHAPES = {
    "opt": {"model_type": "opt", "ffn_dim": 256, "word_embed_proj_dim": 64, "do_layer_norm_before": True},
    "llama": {"model_type": "llama", "num_key_value_heads": 2, "intermediate_size": 96},
}


def _spec(family: str):
    from dstune.catalog._models import spec_from_hf_config

    common = {"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 3, "vocab_size": 128}
    return spec_from_hf_config(f"fused-{family}", {**common, "max_position_embeddings": 64, **SHAPES[family]})


def _fused_by_deepspeed(family: str) -> int:
    """16-bit elements DeepSpeed's HE policy concatenates into new tensors for one real layer of the spec."""
    config = _spec(family).hf_config_object()
    if family == "opt":
        from deepspeed.module_inject.containers.opt import HFOPTLayerPolicy
        from transformers.models.opt.modeling_opt import OPTDecoderLayer

        layer = OPTDecoderLayer(config, layer_idx=0)
        qkvw, qkvb, *_ = HFOPTLayerPolicy(layer).attention()
        fused, originals = [qkvw, qkvb], [layer.self_attn.q_proj.weight]
    else:
        from deepspeed.module_inject.containers.llama import LLAMALayerPolicy
        from transformers.models.llama.modeling_llama import LlamaDecoderLayer

        layer = LlamaDecoderLayer(config, layer_idx=0)
        policy = LLAMALayerPolicy(layer)
        fused, originals = [policy.attention()[0], policy.mlp()[0]], [layer.mlp.up_proj.weight]
    storages = {t.untyped_storage().data_ptr() for t in fused if t is not None}
    assert not storages & {t.untyped_storage().data_ptr() for t in originals}  # new tensors, not views
    return sum(t.numel() for t in fused if t is not None)


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_fused_copy_is_what_deepspeeds_policies_concatenate(family):
    """HFOPTLayerPolicy.attention / LLAMALayerPolicy.attention+mlp torch.cat new tensors (q/k/v; gate/up)."""
    f = model_facts(_spec(family))
    ours = mem.he_fused_copy_bytes(f, np.array([2]), np.array([True]))[0]
    assert ours == 2 * _fused_by_deepspeed(family) * f.layers


def test_fused_copy_stays_at_zero_0_2_and_not_at_zero3_or_without_kernels():
    """set_attn_params_wo_copy keeps the fused tensors unless Z3_enabled; ZeRO's flat buffer keeps the originals:
    about 3 GiB more per GPU for OPT-6.7B while the HE is on."""
    src = inspect.getsource(
        __import__("deepspeed.module_inject.containers.features.split_qkv", fromlist=["x"]).HybridSplitQKVContainer
    )
    assert "if not Z3_enabled:" in src and "self.module.attention.attn_qkvw = self.qkvw" in src
    z2 = estimate(_ppo(), OPT67, EIGHT, critic_model=OPT350, he_kernels=True)
    no_kernels = estimate(_ppo(), OPT67, EIGHT, critic_model=OPT350, he_kernels=False)
    copy = mem.he_fused_copy_bytes(model_facts(OPT67), np.array([2]), np.array([True]))[0]
    assert copy / 2**30 == pytest.approx(3.0, abs=0.1)
    assert z2.gpu_memory["inference_weights"] >= copy
    assert mem.he_fused_copy_bytes(model_facts(OPT67), np.array([3]), np.array([True]))[0] == 0.0
    assert no_kernels.gpu_memory["inference_weights"] == 0.0


# --- gradient lifetimes ----------------------------------------------------------------------------------------

_LIFETIMES = r"""
import json, torch, deepspeed
from dstune.plan import make_plan, to_deepspeed
out = {}
for stage in (1, 2, 3):
    config = to_deepspeed(make_plan("sft", {"zero_stage": stage, "dtype": "bf16"}), 1)["model"]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 8))
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters()), config=config)
    zero = engine.optimizer
    groups = (lambda: zero.fp32_partitioned_groups_flat) if stage == 3 else (lambda: zero.single_partition_of_fp32_groups)
    seen = {}
    inner = zero.optimizer.step
    def step(*a, **k):
        seen["fp32_in_step"] = sum(g.grad.numel() * g.grad.element_size() for g in groups() if g.grad is not None)
        return inner(*a, **k)
    zero.optimizer.step = step
    engine.backward(engine(torch.randn(4, 64, dtype=torch.bfloat16)).float().pow(2).mean())
    seen["fp32_after_backward"] = sum(g.grad is not None for g in groups())
    seen["param_grads_after_backward"] = sum(p.grad is not None for p in model.parameters())
    if stage < 3:
        parts = zero.averaged_gradients.values() if isinstance(zero.averaged_gradients, dict) else zero.averaged_gradients
        seen["grad16_after_backward"] = sum(t.numel() * t.element_size() for a in parts if a is not None for t in a)
    else:
        seen["grad16_after_backward"] = zero.grad_partitions_flat_buffer.numel() * zero.grad_partitions_flat_buffer.element_size()
    engine.step()
    seen["fp32_after_step"] = sum(g.grad is not None for g in groups())
    out[stage] = seen
print("LIFETIMES", json.dumps(out))
"""


@pytest.mark.slow
def test_gradient_lifetimes_are_deepspeeds(tmp_path):
    """A real ZeRO engine (CPU accelerator, world size 1, bf16, DeepSpeed-Chat's config): after the boundary
    backward the 16-bit partition is there (ZeRO-1 too: it reduced inside the backward) and no fp32 gradient;
    step() makes the fp32 partition and frees it; ZeRO-3's 16-bit buffer exists from init."""
    env = {
        **os.environ,
        "DS_ACCELERATOR": "cpu",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29533",
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
    }
    run = subprocess.run(
        [sys.executable, "-c", _LIFETIMES], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    line = next((x for x in run.stdout.splitlines() if x.startswith("LIFETIMES ")), None)
    assert line is not None, run.stderr[-2000:]
    seen = {int(k): v for k, v in json.loads(line.removeprefix("LIFETIMES ")).items()}
    p = np.array([64.0 * 64 + 64 + 64 * 8 + 8])
    for stage in (1, 2, 3):
        s = np.array([stage])
        off = np.array([False])
        assert seen[stage]["fp32_after_backward"] == 0 and seen[stage]["fp32_after_step"] == 0
        assert seen[stage]["param_grads_after_backward"] == 0  # stage 1 freed its full grads after reducing
        # step() also holds the flat 16-bit copy it converts (2 bytes per element; test_zero_world2.py)
        step_fp32 = mem.grad_step_bytes(p, s, off, 1, C)[0] - (2 * p[0] if stage < 3 else 0.0) - 2 * p[0]
        assert seen[stage]["fp32_in_step"] == step_fp32
        held = mem.grad_accumulated_bytes(p, s, off, 1)[0] if stage == 2 else None
        if stage == 3:
            held = mem.trained_states(p, p, s, off, 1, C).grads[0]
        if held is not None:
            assert seen[stage]["grad16_after_backward"] == held
        else:
            assert seen[stage]["grad16_after_backward"] == 2 * p[0]  # the reduced partition, until step


def _backward_timeline(batch: int, seq: int) -> tuple[dict, float, float, float]:
    """A real OPT (transformers, from a config, bf16, eager attention, no dropout) trained by plain autograd, as
    stage 0's FP16_Optimizer does (fused_optimizer.py `backward`: `scaled_loss.backward()`, no gradient hooks):
    (its config, bytes the forward leaves saved, the backward's highest rise above them, the .grad bytes made)."""
    import torch
    import transformers
    from torch.profiler import ProfilerActivity, profile

    def rise(fn) -> tuple[int, int]:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        run = top = 0
        for e in sorted(prof.events(), key=lambda e: e.time_range.start):
            run += e.self_cpu_memory_usage
            top = max(top, run)
        return top, run

    config = transformers.OPTConfig(
        vocab_size=512, hidden_size=256, ffn_dim=1024, num_hidden_layers=8, num_attention_heads=4,
        max_position_embeddings=seq + 2, word_embed_proj_dim=256, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.OPTForCausalLM(config).to(torch.bfloat16).train()
    ids = torch.randint(0, config.vocab_size, (batch, seq))
    out = {}
    _, saved = rise(lambda: out.update(loss=model(input_ids=ids, labels=ids).loss))
    top, _ = rise(lambda: out.pop("loss").backward())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    return config.to_dict(), float(saved), float(top), float(grads)


@pytest.mark.parametrize("batch,seq", [(8, 256), (2, 64), (1, 16)])
def test_stage0_gradients_grow_as_activations_are_freed(batch, seq):
    """A backward that keeps every gradient it makes peaks at one end, not at all activations plus all
    gradients: the rows span activations 16x the gradients (peak at the start) to 0.07x (at the end)."""
    from dstune.catalog._models import spec_from_hf_config

    config, saved, top, grads = _backward_timeline(batch, seq)
    f = model_facts(spec_from_hf_config("probe-opt", config))
    measured = saved + top
    acts, held = mem.growing_grads_backward(np.array([saved]), np.array([grads]), f, np.array([True]))
    term = acts[0] + held[0]
    assert term == pytest.approx(measured, rel=0.08)
    whole = mem.growing_grads_backward(np.array([saved]), np.array([grads]), f, np.array([False]))
    assert abs(sum(whole)[0] / measured - 1.0) > abs(term / measured - 1.0)  # all of both: further off


@pytest.mark.parametrize("stage", [0, 1])
def test_sft_keeps_full_gradients_between_micro_batches(stage):
    """SFT at gradient accumulation 3: stages 0-1 keep every .grad until the boundary backward, so the last
    backward starts with all of them (at accumulation 1, ZeRO-1 reduces into buckets as they are made)."""
    f = model_facts(OPT67)
    plan = make_plan("sft", {"zero_stage": stage, "gradient_accumulation_steps": 3})
    accumulating = estimate(plan, OPT67, EIGHT)
    assert accumulating.gpu_memory["grads"] >= 2 * f.params
    if stage == 1:
        once = estimate(make_plan("sft", {"zero_stage": 1, "gradient_accumulation_steps": 1}), OPT67, EIGHT)
        assert once.gpu_memory["grads"] < 2 * f.params / 2


def test_zero2_ppo_holds_no_gradients_while_generating():
    """Today's steady-state gradients were 3 GiB too many at OPT-6.7B ZeRO-2 on 8 GPUs: none live in generation."""
    e = estimate(
        _ppo(enable_hybrid_engine=False, per_device_generation_batch_size=32), OPT67, EIGHT, critic_model=OPT350
    )
    # the peak is the experience forwards with both outputs held (issue 30), still with no gradient
    assert e.peak_phase == "experience" and e.gpu_memory["grads"] == 0.0
    train = estimate(_ppo(enable_hybrid_engine=False), OPT67, EIGHT, critic_model=OPT350)
    assert train.peak_phase == "actor_train" and train.gpu_memory["grads"] > 0.0
    f = model_facts(OPT67)
    p, two = np.array([float(f.params)]), np.array([2])
    assert mem.trained_states(p, p, two, np.array([False]), 8, C).grads[0] == 0.0


def test_zero1_reduces_inside_the_boundary_backward():
    """stage_1_and_2.py: ZeRO-1 uses the same overlap_comm buckets; its step holds no all-reduce."""
    from dstune.costmodel import _time as tm

    hw = tm.Hardware.of(EIGHT, "fp16", C)
    p = np.array([1e9])
    one = tm.optimizer_step_seconds(p, p, np.array([1]), np.array([False]), hw, C)
    two = tm.optimizer_step_seconds(p, p, np.array([2]), np.array([False]), hw, C)
    assert one == pytest.approx(two)
    inside = tm.zero_micro_comm_seconds(p, p, np.array([1]), np.array([False]), 24, np.array([4.0]), hw, C)
    assert inside[0] == pytest.approx(tm.allreduce_seconds(2e9, hw) / 4)


def test_zero12_gradient_reduction_is_an_all_reduce():
    """Issue 30 item 5: DeepSpeed's default use_multi_rank_bucket_allreduce (and reduce_scatter) send ZeRO 1-2
    buckets through allreduce_and_scatter: twice the reduce-scatter volume the model charged."""
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    from dstune.costmodel import _time as tm
    from dstune.plan import to_deepspeed

    zero = to_deepspeed(make_plan("sft", {"zero_stage": 2}), 8)["model"]["zero_optimization"]
    config = DeepSpeedZeroConfig(**zero)
    assert config.use_multi_rank_bucket_allreduce and config.reduce_scatter
    hw = tm.Hardware.of(make_cluster(A100, 16), "fp16", C)
    p = np.array([1e9])
    two = tm.zero_micro_comm_seconds(p, p, np.array([2]), np.array([False]), 24, np.array([1.0]), hw, C)
    assert two[0] == pytest.approx(tm.allreduce_seconds(2e9, hw)) and two[0] > 1.9 * tm.allgather_seconds(2e9, hw)


# --- the HE's eval(), LoRA GEMMs, DPO ------------------------------------------------------------------------


def test_zero3_eval_collects_garbage_every_generation():
    from deepspeed.runtime.hybrid_engine import DeepSpeedHybridEngine

    src = inspect.getsource(DeepSpeedHybridEngine.eval)
    assert "if self.Z3_enabled:" in src and "gc.collect()" in src and "empty_cache()" in src
    z3 = estimate(_ppo(actor_zero_stage=3), OPT67, EIGHT, critic_model=OPT350, he_kernels=False)
    z3_off = estimate(
        _ppo(actor_zero_stage=3, enable_hybrid_engine=False), OPT67, EIGHT, critic_model=OPT350, he_kernels=False
    )
    assert z3.phases["generation"] == pytest.approx(z3_off.phases["generation"] + C.empty_cache_s)


def test_lora_flops_are_what_the_adapters_run():
    """FLOPs torch counts in DeepSpeed-Chat's LinearLayer_LoRA forward (profile/_lora.py) beyond the base model."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dstune.profile._lora import convert_linear_layer_to_lora
    from dstune.profile._models import build_causal_lm

    spec = load_model("tiny-opt")
    model = build_causal_lm(spec.hf_config, {"zero_optimization": {"stage": 0}}).eval()
    ids = torch.randint(0, spec.vocab_size, (2, 16))

    def flops() -> int:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(input_ids=ids)
        return counter.get_total_flops()

    base = flops()
    convert_linear_layer_to_lora(model, "decoder.layers.", 8)
    adapters = flops() - base
    t = trained(
        model_facts(spec),
        np.array([8]),
        np.array(["decoder.layers."]),
        np.array([False]),
        np.array([0]),
        np.array([False]),
        1,
        C,
    )
    assert lora_forward_flops(t, np.array([32.0]))[0] == adapters


def test_dpo_reference_forward_runs_over_the_policys_saved_activations():
    """step2_dpo_finetuning/main.py: `outputs = model(**batch)`, then the reference under no_grad, then backward."""
    plan = make_plan("dpo", {"zero_stage": 3, "per_device_train_batch_size": 8, "gradient_checkpointing": False})
    e = estimate(plan, load_model("opt-1.3b"), EIGHT)
    f = model_facts(load_model("opt-1.3b"))
    seqs, seq = np.array([16.0]), np.array([float(plan.max_seq_len)])
    saved = mem.train_activation_bytes(f, seqs, seq, np.array([False]), C)[0]
    ref = mem.eval_activation_bytes(f, seqs, seq, C)[0]
    assert e.peak_phase == "reference"
    assert e.gpu_memory["activations"] == pytest.approx(saved + ref)


# --- stage 0: FP16_Optimizer.step() group by group ------------------------------------------------------------


def test_fp16_optimizer_step_holds_what_its_group_loop_makes():
    """fused_optimizer.py step(): per group, 16-bit grads -> fp32 list -> flat fp32 (kept as the fp32 group's
    grad until Adam ran), then that group's 16-bit grads None. Groups in DeepSpeed-Chat's order (decayed, LoRA,
    no-decay: get_optimizer_grouped_parameters, replicated by profile/_engines.py) on a LoRA-converted model."""
    import torch
    from deepspeed.runtime.fp16.fused_optimizer import FP16_Optimizer

    src = inspect.getsource(FP16_Optimizer.step)
    assert "p.grad.to(data_type)" in src and "self.fp32_groups_flat[i].grad = grads_groups_flat[i]" in src
    assert src.index("p.grad = None") > src.index("grads_groups_flat.append(")

    from dstune.profile._engines import grouped_parameters
    from dstune.profile._lora import convert_linear_layer_to_lora
    from dstune.profile._models import build_causal_lm

    spec = load_model("tiny-opt")
    with torch.device("meta"):
        model = build_causal_lm(spec.hf_config, {"zero_optimization": {"stage": 0}})
        convert_linear_layer_to_lora(model, "decoder.layers.", 8)
    sizes = [sum(p.numel() for p in g["params"]) for g in grouped_parameters(model, 0.1)]
    loop_peak = max(4 * sum(sizes[:i]) + 10 * n + 2 * sum(sizes[i + 1 :]) for i, n in enumerate(sizes))
    t = trained(
        model_facts(spec),
        np.array([8]),
        np.array(["decoder.layers."]),
        np.array([False]),
        np.array([0]),
        np.array([False]),
        1,
        C,
    )
    assert t.params_trainable[0] == sum(sizes)
    ours = mem.grad_step_bytes(t.params_trainable, np.array([0]), np.array([False]), 1, C, t.lora)[0]
    assert ours == pytest.approx(loop_peak, rel=0.02)
    assert mem.fp16_optimizer_step_bytes(np.array([1e9]))[0] == 10e9  # one group: 2 + 4 + 4 bytes each
