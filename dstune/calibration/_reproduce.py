"""Reproduce each source's method in dstune: turn an evidence row into the plan(s) dstune scores.

One function per method (named in sources.json). A `Case` holds a ladder of rungs, each a
tuple of plans in the source's order of preference; `choose` scores them all in one
vectorised pass and applies the source's rule:

- `dschat_table1` (BenckmarkSetting.md): the shipped script's knobs for the nearest size and
  layout, gen batch = train batch, the largest batch that fits (powers of two, at most 1024
  pairs per step). Readings used where the method is ambiguous: inside a rung, the Hybrid
  Engine's generation-memory knobs count as batch-size knobs (`he_variants`: the script's
  inference_tp_size, then larger ones up to one node, then tp_gather_partition_size 1), and the
  largest batch that fits under any of them is taken; if no batch of the script's plan fits,
  the first rung of (both ZeRO-3, checkpointing, only_optimize_lora, offloaded reference,
  optimizer offload, unpinned HE) on which some batch fits.
- `dschat_max_model` (blog Table 3): the ladder up to the end of DeepSpeed-Chat's recipe
  (reference offload; the README's recipe has no optimizer offload); "fits" when any plan fits.
- `dschat_script`, `fixed_plan`: the row states the plan; one rung of one plan.

"Fits" here is the GPU peak within the GPU's whole memory (no search headroom) and the host
peak within host memory: the question is whether the run went through.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..catalog import (
    ClusterSpec,
    ModelSpec,
    Stack,
    load_gpu,
    load_model,
    make_cluster,
    named_stack,
    target_transformers,
)
from ..catalog._models import spec_from_hf_config
from ..costmodel import DEFAULT_CONSTANTS, CostConstants, estimate_table, plans_to_columns
from ..errors import DstuneError
from ..plan import Context, Plan, baseline_plan, make_plan, violations
from ..steps.ppo import PpoPlan
from ._evidence import EvidenceRow, load_sources

MAX_PAIRS_PER_STEP = 1024
"""BenckmarkSetting.md: at most 524,288 tokens (1024 pairs of 512) per step."""

_GPT2_SHAPES = {
    "gpt2": (12, 768, 12),
    "gpt2-medium": (24, 1024, 16),
    "gpt2-large": (36, 1280, 20),
    "gpt2-xl": (48, 1600, 25),
    "gpt2-10b": (50, 4096, 32),
    "gpt3-175b": (96, 12288, 96),
    "gpt-1t": (128, 25600, 160),
}
"""(layers, hidden, heads) of the Hugging Face GPT-2 checkpoints, the 10B GPT-2 of DeepSpeed's ZeRO-Offload
tutorial and the 175B / 1T GPTs of the DeepSpeed-on-Azure post; vocabulary 50257, 1024 positions."""


@functools.cache
def evidence_model(name: str) -> ModelSpec:
    """A catalog model, or an OPT-shaped stand-in with GPT-2's shape (GPT-2 is not in the catalog:
    pre-LN, learned positions, 4h MLP with biases, tied embeddings, as OPT; parameters within 0.1%)."""
    if name not in _GPT2_SHAPES:
        return load_model(name)
    layers, hidden, heads = _GPT2_SHAPES[name]
    config = {
        "model_type": "opt",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "ffn_dim": 4 * hidden,
        "vocab_size": 50257,
        "max_position_embeddings": 1024,
        "word_embed_proj_dim": hidden,
        "do_layer_norm_before": True,
        "enable_bias": True,
        "tie_word_embeddings": True,
    }
    return spec_from_hf_config(name, config)


@dataclass(frozen=True)
class Case:
    """An evidence row as dstune plans, ready to score."""

    row: EvidenceRow
    model: ModelSpec | None
    critic_model: ModelSpec | None
    cluster: ClusterSpec | None
    rungs: tuple[tuple[str, tuple[Plan, ...]], ...]
    reading: str
    """How the source's method was read for this row."""
    skipped: str | None = None
    """Why this row cannot be reproduced (e.g. a model missing from the catalog)."""
    stack: Stack | None = None
    """The stack the source ran (DeepSpeed-Chat's rows: `dschat-2023`); None: eager attention, no stack rules."""
    fit_fraction: float = 1.0
    """Share of the GPU's memory a plan's peak may reach to count as fitting (the whole card: did the run go
    through; the `headroom` reading of Table 1 keeps the tool's headroom free)."""

    @property
    def plans(self) -> tuple[Plan, ...]:
        return tuple(p for _, plans in self.rungs for p in plans)

    @property
    def known_model(self) -> ModelSpec:
        """The model to score; only a skipped row has none."""
        if self.model is None:
            raise ValueError(f"evidence row {self.row.id} is skipped ({self.skipped}): it has no model to score")
        return self.model

    @property
    def known_cluster(self) -> ClusterSpec:
        """The cluster to score on; only a skipped row has none."""
        if self.cluster is None:
            raise ValueError(f"evidence row {self.row.id} is skipped ({self.skipped}): it has no cluster to score on")
        return self.cluster

    @property
    def context(self) -> Context:
        return Context(world_size=self.row.gpus, model=self.model, critic_model=self.critic_model, stack=self.stack)


@dataclass(frozen=True)
class Choice:
    """The plan the source's rule picks under given constants, and its prediction."""

    plan: Plan
    rung: str
    samples_per_s: float
    gpu_peak_bytes: float
    fits: bool
    """Some plan of the case fits (for a max-model fact: the model runs at all)."""
    gpu_allocated_bytes: float = 0.0
    """What torch's max_memory_allocated would show (no CUDA context, no allocator overhead)."""


def _valid(plans: Sequence[Plan], ctx: Context) -> tuple[Plan, ...]:
    """Every rule on the source's own stack (`ctx.stack`): Table 1's TP cells were measured in April 2023 on
    DeepSpeed 0.9.0 (`dschat-2023`), whose Hybrid Engine sliced the weights for inference_tp_size without an
    mpu, so he_tp_cannot_shard holds them valid there; on DeepSpeed >= 0.9.2 it would not."""
    return tuple(p for p in plans if not violations(p, ctx))


def _batches(gpus: int, largest: int = 64) -> list[int]:
    return [b for b in (largest, 32, 16, 8, 4, 2, 1) if b * gpus <= MAX_PAIRS_PER_STEP and b <= largest]


_LADDER: tuple[tuple[str, dict[str, Any]], ...] = (
    ("script", {}),
    ("+zero3", {"actor_zero_stage": 3, "critic_zero_stage": 3}),
    ("+checkpointing", {"actor_gradient_checkpointing": True, "critic_gradient_checkpointing": True}),
    ("+only_optimize_lora", {"only_optimize_lora": True}),
    ("+offload_reference_model", {"offload_reference_model": True}),
    ("+offload", {"actor_zero_stage": 3, "critic_zero_stage": 3, "offload": True}),
    ("+unpinned", {"unpin_actor_parameters": True}),
)
"""DeepSpeed-Chat's own recipe for the largest model (step3_rlhf_finetuning/README.md, 'largest model
training on your own system': ZeRO-3 with several GPUs, gradient checkpointing, LoRA, reference model
offloading), then optimizer offload and unpinned HE gathers as last resorts. Each rung keeps the previous."""


RECIPE_END = "+offload_reference_model"
"""The last rung of DeepSpeed-Chat's own largest-model recipe."""


def _ppo_plan(values: dict[str, Any], base: PpoPlan) -> PpoPlan:
    plan = make_plan("ppo", values, base=base)
    assert isinstance(plan, PpoPlan)  # dataclasses.replace of a PpoPlan
    return plan


def he_variants(plan: PpoPlan, gpus_per_node: int) -> list[dict[str, Any]]:
    """Hybrid Engine settings tried at one batch, in order of preference: the plan's own, then a larger
    inference_tp_size (divisors of one node's GPUs), then each with tp_gather_partition_size 1.

    Why: with ZeRO-3 and pinned parameters the HE holds 1/tp of the 16-bit actor plus
    `tp_gather_partition_size` whole layers while gathering, so for large actors these knobs, not the
    batch, decide what fits; DeepSpeed-Chat exposes them for that (its run_66b.sh sets tp 8, partition 4).
    TP groups stay inside a node, as in that script (the cost model routes TP all-reduces over NVLink).
    """
    if not (plan.enable_hybrid_engine and plan.actor_zero_stage == 3 and not plan.unpin_actor_parameters):
        return [{}]
    own = plan.inference_tp_size
    tps = [own] + [t for t in (2, 4, 8, 16) if t > own and t <= gpus_per_node and gpus_per_node % t == 0]
    variants: list[dict[str, Any]] = [{"inference_tp_size": t} for t in tps]
    if plan.tp_gather_partition_size > 1:
        variants += [{"inference_tp_size": t, "tp_gather_partition_size": 1} for t in tps if t > 1]
    return variants


def _ladder(
    script_plan: PpoPlan,
    batches: list[int],
    ctx: Context,
    gpus_per_node: int,
    last: str | None = None,
    he_search: bool = True,
) -> tuple[tuple[str, tuple[Plan, ...]], ...]:
    rungs = []
    values: dict[str, Any] = {}
    for label, extra in _LADDER:
        if label == "+zero3" and ctx.world_size == 1:
            continue
        values = {**values, **extra}
        if label == "+only_optimize_lora":
            values["actor_lora_dim"] = script_plan.actor_lora_dim or 128
        base = _ppo_plan(values, base=script_plan)
        batch = ("per_device_generation_batch_size", "per_device_training_batch_size")
        plans = [
            _ppo_plan({**dict.fromkeys(batch, b), **he}, base=base)
            for b in batches
            for he in (he_variants(base, gpus_per_node) if he_search else [{}])
        ]
        rungs.append((label, _valid(plans, ctx)))
        if label == last:
            break
    return tuple(rungs)


def _setup(row: EvidenceRow) -> tuple[ModelSpec, ModelSpec | None, ClusterSpec]:
    model = evidence_model(row.model)
    critic = evidence_model(row.critic_model) if row.critic_model else None
    return model, critic, make_cluster(load_gpu(row.gpu_type), row.gpus, row.nodes)


def _script_plan(row: EvidenceRow, model: ModelSpec, critic: ModelSpec | None) -> tuple[PpoPlan, str]:
    workload = {
        k: v
        for k, v in row.settings
        if k in ("max_prompt_seq_len", "max_answer_seq_len", "ppo_epochs", "generation_batches")
    }
    workload.setdefault("enable_ema", False)  # the scripts as they were, SCRIPTS_BEFORE_EMA
    baseline = baseline_plan("ppo", model, row.gpus, critic_model=critic, workload=workload)
    if not isinstance(baseline.plan, PpoPlan):
        raise TypeError(f"the ppo baseline is a {type(baseline.plan).__name__}, not a PpoPlan")
    return baseline.plan, baseline.script


SCRIPTS_BEFORE_EMA = "DeepSpeedExamples 3a77097a (2023-04-21, #346)"
"""The commit that added `--enable_ema` to step 3's single_node/run_1.3b.sh, after the blog's tables and
figures (2023-04-12) were measured: the scripts those rows ran keep no EMA copy, whatever the script has now."""


DSCHAT_STACK = "dschat-2023"
"""The stack DeepSpeed-Chat's April 2023 rows ran (catalog/data/stacks.json), passed as any --stack is."""


TABLE1_READINGS = {
    "default": "largest batch that fits the whole card, over the HE's TP size up to a node",
    "script_tp": "the script's own inference_tp_size and tp_gather_partition_size",
    "headroom": f"largest batch within the tool's {DEFAULT_CONSTANTS.headroom_fraction:.0%} headroom",
}
"""Readings of what Table 1 does not state (batch size, HE TP size), each equally defensible (issue 30):
scripts/bench_accuracy.py prints the accuracy under each, so that none is chosen for its score."""


def dschat_table1(row: EvidenceRow, choice: str = "default") -> Case:
    model, critic, cluster = _setup(row)
    plan, script = _script_plan(row, model, critic)
    stack = named_stack(DSCHAT_STACK)
    ctx = Context(world_size=row.gpus, model=model, critic_model=critic, stack=stack)
    reading = (
        f"{script} knobs; gen batch = train batch = largest power of two that fits with <= {MAX_PAIRS_PER_STEP} "
        "pairs per step, over the HE's TP size (up to a node) and gather partition; else the first ladder rung "
        "that fits"
    )
    rungs = _ladder(plan, _batches(row.gpus), ctx, cluster.gpus_per_node, he_search=choice != "script_tp")
    if choice != "default":
        reading += f" (reading '{choice}': {TABLE1_READINGS[choice]})"
    fraction = 1.0 - DEFAULT_CONSTANTS.headroom_fraction if choice == "headroom" else 1.0
    return Case(row, model, critic, cluster, rungs, reading, stack=stack, fit_fraction=fraction)


def dschat_max_model(row: EvidenceRow) -> Case:
    model, critic, cluster = _setup(row)
    plan, script = _script_plan(row, model, critic)
    stack = named_stack(DSCHAT_STACK)
    ctx = Context(world_size=row.gpus, model=model, critic_model=critic, stack=stack)
    reading = (
        f"fits if some plan of DeepSpeed-Chat's largest-model recipe from {script} (ZeRO-3, checkpointing, "
        "LoRA-only, reference offload; no optimizer offload, pinned HE) fits at some batch (1-64)"
    )
    rungs = _ladder(plan, _batches(row.gpus), ctx, cluster.gpus_per_node, last=RECIPE_END)
    return Case(row, model, critic, cluster, rungs, reading, stack=stack)


def fixed_plan(row: EvidenceRow) -> Case:
    model, critic, cluster = _setup(row)
    plan = make_plan(row.step, row.settings_dict)
    reading = "the stated settings, DeepSpeed-Chat defaults otherwise"
    return Case(row, model, critic, cluster, (("stated", (plan,)),), reading)


def dschat_script(row: EvidenceRow) -> Case:
    """A DeepSpeed-Chat run as its README examples or training logs state it, on the stack those ran
    (`dschat-2023`: the logs were added in 3a77097a, 2023-04-21, beside the release's ds_utils.py)."""
    return replace(fixed_plan(row), stack=named_stack(DSCHAT_STACK))


REPRODUCERS: dict[str, Callable[[EvidenceRow], Case]] = {
    "dschat_table1": dschat_table1,
    "dschat_max_model": dschat_max_model,
    "dschat_script": dschat_script,
    "fixed_plan": fixed_plan,
}


def reproduce(row: EvidenceRow, table1_reading: str = "default") -> Case:
    """The row as dstune plans, by its source's method (Table 1's rows under `table1_reading`, one of
    TABLE1_READINGS); a row that cannot be built says why."""
    name = load_sources()[row.source].reproduction
    try:
        if name == "dschat_table1":
            return dschat_table1(row, table1_reading)
        return REPRODUCERS[name](row)
    except DstuneError as error:
        return Case(row, None, None, None, (), "", skipped=str(error))


PUBLISHED_STACK = 1.0
"""Every published row (2020-2023) ran attention eagerly, in fp16: DeepSpeed-Chat's 2023 runs on transformers 4.28
(the `dschat-2023` stack says so: SDPA became the default in 4.36, Dec 2023); Megatron's GPT of the ZeRO-Offload
and Azure rows, which name no stack, keeps its softmax too. Their activations are the measured 'published' stack
(costmodel/data/activations.json)."""
DSCHAT_2023_OVERLAP_COMM = 0.0
"""April 2023's get_train_ds_config set no `overlap_comm`: one ZeRO 1-2 reduce bucket (`CostConstants.overlap_comm`)."""


def _score(case: Case, plans: Sequence[Plan], constants: CostConstants) -> dict[str, np.ndarray]:
    eager = case.stack.eager_attention if case.stack is not None else None
    constants = replace(constants, published_stack=PUBLISHED_STACK if eager in (True, None) else 0.0)
    if case.stack is not None and case.stack.name == DSCHAT_STACK:
        constants = replace(constants, overlap_comm=DSCHAT_2023_OVERLAP_COMM)
    return estimate_table(
        case.row.step,
        plans_to_columns(list(plans)),
        case.known_model,
        case.known_cluster,
        critic_model=case.critic_model,
        constants=constants,
        transformers_version=target_transformers(case.stack),
    )


def fits_mask(case: Case, table: dict[str, np.ndarray]) -> np.ndarray:
    return (table["gpu_peak_bytes"] <= case.fit_fraction * case.known_cluster.gpu.memory_bytes) & table["fits_host"]


def choose(case: Case, constants: CostConstants = DEFAULT_CONSTANTS) -> Choice:
    """Apply the source's rule under `constants`: the first rung with a fitting plan, its first fitting plan.
    When nothing fits, the script's preferred plan is returned with fits=False (a predicted OOM)."""
    plans = case.plans
    table = _score(case, plans, constants)
    ok = fits_mask(case, table)
    start = 0
    for label, rung in case.rungs:
        hits = np.flatnonzero(ok[start : start + len(rung)])
        if len(hits):
            i = start + int(hits[0])
            return Choice(
                plans[i],
                label,
                float(table["samples_per_s"][i]),
                float(table["gpu_peak_bytes"][i]),
                True,
                float(table["gpu_allocated_bytes"][i]),
            )
        start += len(rung)
    return Choice(
        plans[0],
        case.rungs[0][0],
        float(table["samples_per_s"][0]),
        float(table["gpu_peak_bytes"][0]),
        False,
        float(table["gpu_allocated_bytes"][0]),
    )


def predict_chosen(
    cases: Sequence[Case], plans: Sequence[Plan], constants: CostConstants
) -> tuple[np.ndarray, np.ndarray]:
    """(samples/s, GPU peak bytes) of one given plan per case under `constants`."""
    sps = np.empty(len(cases))
    peak = np.empty(len(cases))
    for i, (case, plan) in enumerate(zip(cases, plans)):
        table = _score(case, [plan], constants)
        sps[i], peak[i] = table["samples_per_s"][0], table["gpu_peak_bytes"][0]
    return sps, peak


def with_values(constants: CostConstants, **values: float) -> CostConstants:
    return replace(constants, **values)
