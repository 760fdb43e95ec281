"""The cost model does what DeepSpeed 0.19.8 does (issue 13): checked against DeepSpeed's own code where
it computes the quantity (the C++ workspace sizing, the Python fallback, config defaults, estimators)."""

import dataclasses
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.costmodel import DEFAULT_CONSTANTS, estimate, estimate_table, model_facts, plans_to_columns
from dstune.costmodel import _memory as mem
from dstune.costmodel import _time as tm
from dstune.plan import make_plan, to_deepspeed

A100 = load_gpu("A100-80G")
OPT67, OPT13, OPT350 = load_model("opt-6.7b"), load_model("opt-1.3b"), load_model("opt-350m")
EIGHT = make_cluster(A100, 8)
GiB = 2**30

SHIPPED_67 = {
    "actor_zero_stage": 3,
    "critic_zero_stage": 3,
    "per_device_generation_batch_size": 4,
    "per_device_training_batch_size": 4,
    "enable_hybrid_engine": True,
    "actor_gradient_checkpointing": True,
}
"""DeepSpeed-Chat's opt/single_node/run_6.7b.sh."""
SINGLE_GPU_13 = {
    "actor_zero_stage": 0,
    "critic_zero_stage": 0,
    "gradient_accumulation_steps": 2,
    "enable_hybrid_engine": True,
    "actor_lora_dim": 128,
    "actor_gradient_checkpointing": True,
}
"""DeepSpeed-Chat's opt/single_gpu/run_1.3b.sh (batch 16/16 defaults)."""


def _overhead(e, c):
    """The allocator overhead the estimate charged (test_allocator_overhead_* says on what)."""
    return e.gpu_peak_bytes - e.gpu_allocated_bytes - c.cuda_context_bytes


def _ppo(**values):
    return make_plan("ppo", {**SHIPPED_67, **values})


def _est(plan, cluster=EIGHT, model=OPT67, **kw):
    return estimate(plan, model, cluster, critic_model=OPT350, **kw)


def _table(plans, cluster=EIGHT, model=OPT67, **kw):
    return estimate_table("ppo", plans_to_columns(plans), model, cluster, critic_model=OPT350, **kw)


# --- 1. Hybrid Engine tensor parallelism -------------------------------------------------------------------


def test_deepspeed_gathers_prompts_across_tp_and_shards_only_when_pinned():
    """The facts the TP terms rest on, read from the installed DeepSpeed."""
    from deepspeed.runtime.hybrid_engine import DeepSpeedHybridEngine

    source = inspect.getsource(DeepSpeedHybridEngine.generate)
    assert "if self.Z3_enabled and self.gather_all_layers:" in source
    pinned_branch = source.split("if self.Z3_enabled and self.gather_all_layers:")[1].split("\n        else:")[0]
    assert "all_gather_into_tensor" in pinned_branch and "apply_tensor_parallelism" in pinned_branch
    assert "input_shape[0] * self._config.hybrid_engine.inference_tp_size" in pinned_branch
    assert "apply_tensor_parallelism" not in source.split("\n        else:")[-1]


def test_tp_shrinks_weight_reads_but_not_kv_or_flops_per_gpu():
    one, eight = _table([_ppo(inference_tp_size=1), _ppo(inference_tp_size=8)])["mem_kv_cache"]
    assert eight == pytest.approx(one)
    f = model_facts(OPT67)
    lm_head = f.vocab * OPT67.word_embed_proj_dim
    b, prompt = np.array([4.0]), np.array([256.0])
    alone = tm.generation_flops_per_gpu(f, b * prompt, prompt, np.array([1.0]), lm_head)
    tp8 = tm.generation_flops_per_gpu(f, 8 * b * prompt, prompt, np.array([8.0]), lm_head)
    assert tp8 >= alone  # same layer work per GPU, plus the unsplit LM head for 8x the sequences
    hw = tm.Hardware.of(EIGHT, "fp16", DEFAULT_CONSTANTS)
    layers = float(OPT67.num_params - OPT67.embedding_params)
    slow = tm.decode_token_seconds(
        f, layers, lm_head, b, np.array([384.0]), np.array([1.0]), np.array([True]), hw, DEFAULT_CONSTANTS
    )
    fast = tm.decode_token_seconds(
        f, layers, lm_head, b, np.array([384.0]), np.array([8.0]), np.array([True]), hw, DEFAULT_CONSTANTS
    )
    assert fast < slow  # small-batch decode is bound by weight reads, which TP splits


def test_unpinned_plans_get_no_tp_credit():
    table = _table(
        [_ppo(unpin_actor_parameters=True, inference_tp_size=1), _ppo(unpin_actor_parameters=True, inference_tp_size=8)]
    )
    for column in ("gpu_peak_bytes", "time_generation", "samples_per_s"):
        assert table[column][1] == pytest.approx(table[column][0])


# --- 2. Hybrid Engine inference workspace ------------------------------------------------------------------


def _header() -> Path:
    import deepspeed

    return Path(deepspeed.__file__).parent / "ops/csrc/transformer/inference/includes/inference_context.h"


_HARNESS = r"""
#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
typedef int cudaError_t;
static size_t g_free = 0;
static cudaError_t cudaMemGetInfo(size_t* free, size_t* total) { *free = g_free; *total = g_free; return 0; }
static cudaError_t cudaMalloc(void** p, size_t) { *p = (void*)16; return 0; }
static cudaError_t cudaFree(void*) { return 0; }
MACROS
struct Ctx {
    void* _workspace = nullptr; size_t _attention_unfused_workspace_offset = 0; size_t _workSpaceSize = 0;
    size_t _free_memory_size = 0; size_t _max_seq_len = 0; size_t _batch_size = 0; unsigned _num_layers = 0;
    unsigned _num_heads = 0; size_t _hidden_dim = 0;
    BODY
};
int main(int argc, char** argv) {
    g_free = strtoull(argv[1], nullptr, 10);
    Ctx ctx;
    // GenWorkSpace(num_layers, num_heads, batch, prompt_len, hidden, mp, external_cache, elem, rank, max_out, min_out)
    ctx.GenWorkSpace(atoi(argv[2]), atoi(argv[3]), strtoull(argv[4], nullptr, 10), 1, strtoull(argv[5], nullptr, 10),
                     atoi(argv[6]), false, 2, 1, atoi(argv[7]), atoi(argv[7]));
    printf("%zu\n", ctx._workSpaceSize);
}
"""


@pytest.fixture(scope="module")
def gen_workspace(tmp_path_factory):
    """DeepSpeed's own `InferenceContext::GenWorkSpace` (inference_context.h, as installed), compiled with
    the CUDA calls stubbed: returns the bytes it would cudaMalloc."""
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler to build DeepSpeed's workspace sizing")
    text = _header().read_text()
    start = text.index("    void GenWorkSpace(")
    depth, i = 0, text.index("{", start)
    while True:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
        if depth == 0:
            break
    macros = "\n".join(re.findall(r"^#define (?:MEGABYTE|GIGABYTE) .*$", text, flags=re.M))
    folder = tmp_path_factory.mktemp("ws")
    (folder / "ws.cpp").write_text(_HARNESS.replace("MACROS", macros).replace("BODY", text[start:i]))
    subprocess.run(["g++", "-O0", "-w", "-o", str(folder / "ws"), str(folder / "ws.cpp")], check=True)

    def run(layers: int, heads: int, batch: int, hidden: int, mp: int, max_out: int) -> int:
        out = subprocess.run(
            [str(folder / "ws"), str(10**15), str(layers), str(heads), str(batch), str(hidden), str(mp), str(max_out)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return int(out.split()[-1])

    return run


@pytest.mark.parametrize(
    "model, gen_bs, tp",
    [("opt-6.7b", 64, 8), ("opt-6.7b", 4, 1), ("opt-1.3b", 16, 1), ("opt-66b", 4, 8), ("llama-2-7b", 8, 2)],
)
def test_workspace_is_what_deepspeed_allocates(gen_workspace, model, gen_bs, tp):
    spec = load_model(model)
    f = model_facts(spec)
    batch, max_out, mp = np.array([gen_bs * tp]), np.array([512.0]), np.array([tp])
    ours = mem.workspace_cache_bytes(f, batch, max_out, mp) + mem.workspace_other_bytes(f, batch, max_out, mp)
    assert ours[0] == gen_workspace(f.layers, f.heads, gen_bs * tp, f.hidden, tp, 512)


def test_opt67b_gen64_tp8_workspace_is_about_40_gb_and_stays(gen_workspace):
    plan = _ppo(inference_tp_size=8, per_device_generation_batch_size=64, per_device_training_batch_size=64)
    e = _est(plan)
    # the peak is now the experience forwards, which also hold the actor's and reference's own caches (issue 30)
    assert e.peak_phase == "experience"
    held = 2 * mem.kv_cache_bytes(model_facts(OPT67), np.array([64.0]), np.array([512.0]))[0]
    workspace = e.gpu_memory["kv_cache"] - held + e.gpu_memory["inference_workspace"]
    assert workspace == pytest.approx(gen_workspace(32, 32, 64 * 8, 4096, 8, 512))
    assert 38e9 < workspace < 42e9
    assert e.peak_phase != "generation"  # without release_inference_cache it is held through training too
    released = _est(dataclasses.replace(plan, release_inference_cache=True))
    # released, the peak is the experience forwards' own outputs (two 16 GiB caches at generation batch 64)
    assert released.gpu_peak_bytes < e.gpu_peak_bytes - 20e9 and released.peak_phase == "experience"
    assert released.phases["generation"] > e.phases["generation"]  # re-acquired and emptied every generate


def test_kv_part_agrees_with_deepspeeds_python_workspace():
    """The fallback InferenceContext (op_binding/workspace.py) sizes the same KV cache per layer."""
    import torch
    from deepspeed.ops.transformer.inference.op_binding.workspace import InferenceContext

    f = model_facts(OPT67)
    ctx = InferenceContext()
    ctx.gen_workspace(f.layers, f.heads, 32, 256, f.hidden, 8, False, torch.half, 0, 512, 512)
    per_layer = 2 * int(np.prod(ctx.kv_cache_size)) * 2  # K and V, 2 bytes
    ours = mem.workspace_cache_bytes(f, np.array([32.0]), np.array([512.0]), np.array([8]))[0]
    assert ours == f.layers * per_layer


# --- 3. No HE kernels: generate() is never replaced ----------------------------------------------------------


def test_without_kernels_the_hybrid_engine_changes_nothing():
    plans = [_ppo(), _ppo(inference_tp_size=8), _ppo(enable_hybrid_engine=False)]
    table = _table(plans, he_kernels=False)
    for column in ("gpu_peak_bytes", "mem_inference_workspace"):
        assert table[column][0] == pytest.approx(table[column][2])
        assert table[column][1] == pytest.approx(table[column][2])
    # the HE's eval() still runs gc.collect() + empty_cache() at ZeRO-3 (hybrid_engine.py eval)
    gc = DEFAULT_CONSTANTS.empty_cache_s
    assert table["time_generation"][0] == pytest.approx(table["time_generation"][2] + gc)
    assert table["time_generation"][1] == pytest.approx(table["time_generation"][2] + gc)
    assert table["mem_inference_workspace"][0] == 0.0
    with_kernels = _table(plans[:1])
    assert with_kernels["time_generation"][0] < table["time_generation"][0] / 3  # ZeRO-3 gathers per token


# --- 4. ZeRO buffers ----------------------------------------------------------------------------------------


def test_bucket_sizes_are_deepspeeds_defaults_that_deepspeed_chat_leaves_unset():
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    zero = to_deepspeed(_ppo(), 8)["actor"]["zero_optimization"]
    assert zero["overlap_comm"] is True and "reduce_bucket_size" not in zero
    assert DEFAULT_CONSTANTS.zero_bucket_elements == DeepSpeedZeroConfig(**zero).reduce_bucket_size
    assert DEFAULT_CONSTANTS.zero3_live_elements == DeepSpeedZeroConfig(**zero).max_live_parameters


@pytest.mark.parametrize("stage", [1, 2])
def test_zero12_double_buckets_whatever_the_trainable_size(stage):
    """A LoRA-only model (a few million trainable) still gets two full reduce buckets per backward."""
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    plan = make_plan("sft", {"zero_stage": stage, "lora_dim": 8, "only_optimize_lora": True})
    e = estimate(plan, OPT13, EIGHT)
    bucket = DeepSpeedZeroConfig().reduce_bucket_size * 2
    c = DEFAULT_CONSTANTS
    assert e.gpu_memory["other"] == pytest.approx(2 * bucket + c.cuda_context_bytes + _overhead(e, c))


_BUCKETS = r"""
import json, os, sys
import torch, deepspeed
from dstune.plan import make_plan, to_deepspeed
out = {}
for stage, overlap in ((1, True), (2, True), (3, True), (1, False), (2, False)):
    config = to_deepspeed(make_plan("sft", {"zero_stage": stage, "dtype": "bf16"}), 1)["model"]
    if not overlap:  # DeepSpeed-Chat's April 2023 config: overlap_comm unset, off below ZeRO-3
        del config["zero_optimization"]["overlap_comm"]
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 8))
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters()), config=config)
    zero = engine.optimizer
    key = f"{stage}" if overlap else f"{stage}-unset"
    if stage < 3:
        zero.ready_for_gradients = False
        zero.setup_buckets()  # what every backward allocates first
        out[key] = sum(t.numel() * t.element_size() for b in zero.ipg_buckets.values() for t in b.buffer)
    else:
        out[key] = sum(b.buffer.numel() * b.buffer.element_size() for b in zero.ipg_buckets.values())
print("BUCKETS", json.dumps(out))
"""


@pytest.mark.slow
def test_bucket_bytes_are_what_deepspeeds_optimizers_allocate(tmp_path):
    """DeepSpeed-Chat's config through deepspeed.initialize (CPU accelerator, world size 1, a 2-layer model):
    the reduce buckets do not depend on the model's size."""
    env = {
        **os.environ,
        "DS_ACCELERATOR": "cpu",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29531",
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
    }
    run = subprocess.run(
        [sys.executable, "-c", _BUCKETS], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    line = next((x for x in run.stdout.splitlines() if x.startswith("BUCKETS ")), None)
    assert line is not None, run.stderr[-2000:]
    allocated = json.loads(line.removeprefix("BUCKETS "))
    c = DEFAULT_CONSTANTS
    assert allocated["1"] == mem.zero12_reduce_bucket_bytes(np.array([1]), c)[0]
    assert allocated["2"] == mem.zero12_reduce_bucket_bytes(np.array([2]), c)[0]
    assert allocated["3"] == mem.zero3_reduce_bucket_bytes(c)
    unset = dataclasses.replace(c, overlap_comm=0.0)  # one bucket, half of the above
    assert allocated["1-unset"] == mem.zero12_reduce_bucket_bytes(np.array([1]), unset)[0] == allocated["1"] / 2
    assert allocated["2-unset"] == mem.zero12_reduce_bucket_bytes(np.array([2]), unset)[0] == allocated["2"] / 2


def test_zero3_keeps_one_reduce_bucket_per_trained_model():
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    bucket = DeepSpeedZeroConfig().reduce_bucket_size * 2
    c = DEFAULT_CONSTANTS
    e = _est(_ppo())
    assert e.gpu_memory["other"] == pytest.approx(2 * bucket + c.cuda_context_bytes + _overhead(e, c))


# --- 5. Transient peaks at the right time --------------------------------------------------------------------


def test_deepspeed_chat_single_gpu_13b_fits_the_a6000_it_ran_on():
    """DeepSpeed-Chat reports step 3 of single_gpu/run_1.3b.sh on one A6000-48G (1.2 h)."""
    a6000 = make_cluster(load_gpu("A6000"), 1)
    e = estimate(make_plan("ppo", SINGLE_GPU_13), OPT13, a6000, critic_model=OPT350)
    assert e.gpu_peak_bytes < a6000.gpu.memory_bytes


def test_stage0_fp32_grads_only_inside_step():
    """At the step the activations are gone; during backward the fp32 copies do not exist yet."""
    plan = make_plan("sft", {"zero_stage": 0, "per_device_train_batch_size": 1})
    e = estimate(plan, OPT13, make_cluster(A100, 1))
    p = OPT13.num_params
    assert e.gpu_memory["activations"] == 0.0
    assert e.gpu_memory["grads"] == pytest.approx(10 * p)  # 16-bit grads + fp32 copies + flat fp32 buffer
    big = estimate(make_plan("sft", {"zero_stage": 0, "per_device_train_batch_size": 64}), OPT13, make_cluster(A100, 1))
    # a big batch peaks at the backward's start: every activation, and only the first gradients made (the LM
    # head's, then a layer's), not all 2p of them (mem.growing_grads_backward)
    f = model_facts(OPT13)
    first = 2 * f.vocab * f.hidden + 2 * f.params / f.layers
    assert big.gpu_memory["grads"] == pytest.approx(first) and big.gpu_memory["activations"] > 8 * p


def test_only_the_running_zero3_model_holds_gathered_layers():
    e = _est(_ppo(enable_hybrid_engine=False))
    n, c = 8, DEFAULT_CONSTANTS
    partitions = 2 * (2 * OPT67.num_params + 2 * model_facts(OPT350, "value").params) / n
    one_gather = max(2 * model_facts(OPT67).largest_layer_params, 2 * c.zero3_live_elements)
    assert e.gpu_memory["params"] <= partitions + one_gather + 1e6


def test_estimator_agreement_still_holds_with_the_gather_inside_the_train_phase():
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    f = model_facts(OPT67)
    e = estimate(make_plan("sft", {"zero_stage": 3, "per_device_train_batch_size": 1}), OPT67, EIGHT)
    _, expected, _ = estimate_zero3_model_states_mem_needs(
        OPT67.num_params, f.largest_layer_params, 8, 1, cpu_offload=False, cpu_offload_params=False
    )
    states = e.gpu_memory["params"] + e.gpu_memory["grads"] + e.gpu_memory["optimizer"]
    # at a micro-batch of 1 the peak is inside step(): no gathered layer (the estimator's 4L), but the 16-bit
    # gradient partition buffer stage3.py allocates at init and step()'s flat 16-bit copy of one sub-group
    # (test_zero_world2.py), which the estimator leaves out
    flat = 2 * min(OPT67.num_params / 8, DEFAULT_CONSTANTS.zero3_sub_group_elements)
    missing = 2 * OPT67.num_params / 8 + flat
    assert states == pytest.approx(expected - 4 * f.largest_layer_params + missing, rel=0.01)


# --- 6. TP all-reduce inside a node ----------------------------------------------------------------------------


def test_tp_allreduce_uses_the_intra_node_link():
    one_node = tm.Hardware.of(EIGHT, "fp16", DEFAULT_CONSTANTS)
    two_nodes = tm.Hardware.of(make_cluster(A100, 16), "fp16", DEFAULT_CONSTANTS)
    assert two_nodes.link_bytes_per_s < two_nodes.intra_link_bytes_per_s == one_node.intra_link_bytes_per_s
    size, tp = np.array([1e8]), np.array([8.0])
    assert tm.tp_allreduce_seconds(size, tp, two_nodes, DEFAULT_CONSTANTS) == pytest.approx(
        tm.tp_allreduce_seconds(size, tp, one_node, DEFAULT_CONSTANTS)
    )


def test_allocator_overhead_is_charged_on_transient_bytes_only():
    """Weights and optimizer states are allocated once at init (flat ZeRO buffers); the caching allocator's
    fragmentation comes from what each step allocates and frees. torch's max_memory_allocated is the rest."""
    e = _est(_ppo())
    c = DEFAULT_CONSTANTS
    table = _table([_ppo()])
    buckets = 2 * 2 * c.zero_bucket_elements
    allocated = sum(v for k, v in e.gpu_memory.items() if k != "other") + buckets
    assert table["gpu_allocated_bytes"][0] == pytest.approx(allocated)
    # Issue 30 item 7: in pinned ZeRO-3 generation the churned bytes are the gathered 16-bit actor and the
    # logits; the HE's kept workspace and cache (cudaMalloc), its containers' shared buffers (made once) and
    # ZeRO-3's persistent gradient buffers and reduce buckets are not charged.
    assert e.peak_phase == "generation" and e.gpu_memory["inference_workspace"] > 0 and e.gpu_memory["grads"] > 0
    shared = mem.he_shared_buffer_bytes(model_facts(OPT67), np.array([True]), np.array([1]))[0]
    churned = e.gpu_memory["activations"] + e.gpu_memory["inference_weights"] - shared
    assert _overhead(e, c) == pytest.approx(c.memory_overhead_fraction * churned)
    assert e.gpu_peak_bytes == pytest.approx(allocated + c.cuda_context_bytes + _overhead(e, c))
