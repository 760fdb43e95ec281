"""DeepSpeed-Chat's hard rules: plans that break them are infeasible, not merely slow.

Each rule is a small function returning a message or None, so the search can
ask "why is this candidate out?" and the CLI can name the rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import PlanRuleError
from ._knobs import Plan, PpoPlan

if TYPE_CHECKING:
    from ..catalog import ModelSpec


@dataclass(frozen=True)
class Context:
    """What the rules need besides the knobs."""

    world_size: int
    model: ModelSpec | None = None
    critic_model: ModelSpec | None = None


Check = Callable[[Plan, Context], "str | None"]


@dataclass(frozen=True)
class Rule:
    """A hard rule and the knobs it reads: the search evaluates it once per distinct combination of
    those knobs, so `reads` must name every knob `check` looks at (a test compares with brute force)."""

    name: str
    reads: tuple[str, ...]
    check: Check

    def __call__(self, plan: Plan, ctx: Context) -> str | None:
        return self.check(plan, ctx)


def _lora_dims(plan: Plan) -> list[tuple[str, int, str]]:
    """(role, rank, module_name) for every trained model."""
    if isinstance(plan, PpoPlan):
        return [
            ("actor", plan.actor_lora_dim, plan.actor_lora_module_name),
            ("critic", plan.critic_lora_dim, plan.critic_lora_module_name),
        ]
    return [("model", plan.lora_dim, plan.lora_module_name)]


def _zero_stages(plan: Plan) -> list[tuple[str, int]]:
    if isinstance(plan, PpoPlan):
        return [("actor_zero_stage", plan.actor_zero_stage), ("critic_zero_stage", plan.critic_zero_stage)]
    return [("zero_stage", plan.zero_stage)]


def tp_needs_zero3(plan: Plan, ctx: Context) -> str | None:
    if isinstance(plan, PpoPlan) and plan.inference_tp_size > 1 and plan.actor_zero_stage != 3:
        return (
            f"inference_tp_size={plan.inference_tp_size} needs actor_zero_stage=3 "
            f"(got {plan.actor_zero_stage}): Hybrid Engine tensor sharding gathers ZeRO-3 partitions"
        )
    return None


def tp_needs_hybrid_engine(plan: Plan, ctx: Context) -> str | None:
    if isinstance(plan, PpoPlan) and plan.inference_tp_size > 1 and not plan.enable_hybrid_engine:
        return f"inference_tp_size={plan.inference_tp_size} has no effect without enable_hybrid_engine=true"
    return None


def tp_divides_world(plan: Plan, ctx: Context) -> str | None:
    if isinstance(plan, PpoPlan) and ctx.world_size % plan.inference_tp_size:
        return (
            f"inference_tp_size={plan.inference_tp_size} must divide the world size "
            f"({ctx.world_size} % {plan.inference_tp_size} = {ctx.world_size % plan.inference_tp_size})"
        )
    return None


def zero2_he_offload_needs_lora(plan: Plan, ctx: Context) -> str | None:
    if (
        isinstance(plan, PpoPlan)
        and plan.actor_zero_stage == 2
        and plan.critic_zero_stage == 2
        and plan.enable_hybrid_engine
        and plan.offload
        and plan.actor_lora_dim == 0
    ):
        return (
            "DeepSpeed-Chat refuses actor_zero_stage=2 + critic_zero_stage=2 + enable_hybrid_engine "
            "+ offload without LoRA (actor_lora_dim=0): training instability"
        )
    return None


def only_lora_needs_lora(plan: Plan, ctx: Context) -> str | None:
    only = plan.only_optimize_lora
    if only and all(rank == 0 for _, rank, _ in _lora_dims(plan)):
        return "only_optimize_lora=true needs a LoRA rank > 0 (lora_dim / actor_lora_dim)"
    return None


def offload_needs_zero(plan: Plan, ctx: Context) -> str | None:
    if not plan.offload:
        return None
    for name, stage in _zero_stages(plan):
        if stage == 0:
            return (
                f"offload=true needs ZeRO stage >= 1 ({name}=0): DeepSpeedCPUAdam only steps "
                "optimizer state that ZeRO has moved to host memory"
            )
    return None


def lora_modules_exist(plan: Plan, ctx: Context) -> str | None:
    models = {"actor": ctx.model, "model": ctx.model, "critic": ctx.critic_model}
    for role, rank, module_name in _lora_dims(plan):
        spec = models[role]
        if rank == 0 or spec is None:
            continue
        if not any(module_name in layer.name for layer in spec.linear_layers()):
            example = spec.linear_layers()[0].name
            return (
                f"{role} LoRA module name {module_name!r} matches no Linear layer of {spec.name} "
                f"(its Linear layers are named like {example!r})"
            )
    return None


def sequence_fits_positions(plan: Plan, ctx: Context) -> str | None:
    if ctx.model is None:
        return None
    length = plan.tokens_per_sample
    limit = ctx.model.max_positions
    if length > limit:
        return f"sequence length {length} exceeds {ctx.model.name}'s {limit} positions"
    return None


_STAGES = ("actor_zero_stage", "critic_zero_stage", "zero_stage")
_LORA = (
    "actor_lora_dim",
    "critic_lora_dim",
    "lora_dim",
    "actor_lora_module_name",
    "critic_lora_module_name",
    "lora_module_name",
)

RULES: tuple[Rule, ...] = (
    Rule("tp_needs_zero3", ("inference_tp_size", "actor_zero_stage"), tp_needs_zero3),
    Rule("tp_needs_hybrid_engine", ("inference_tp_size", "enable_hybrid_engine"), tp_needs_hybrid_engine),
    Rule("tp_divides_world", ("inference_tp_size",), tp_divides_world),
    Rule(
        "zero2_he_offload_needs_lora",
        ("actor_zero_stage", "critic_zero_stage", "enable_hybrid_engine", "offload", "actor_lora_dim"),
        zero2_he_offload_needs_lora,
    ),
    Rule(
        "only_lora_needs_lora",
        ("only_optimize_lora", "actor_lora_dim", "critic_lora_dim", "lora_dim"),
        only_lora_needs_lora,
    ),
    Rule("offload_needs_zero", ("offload", *_STAGES), offload_needs_zero),
    Rule("lora_modules_exist", _LORA, lora_modules_exist),
    Rule(
        "sequence_fits_positions", ("max_prompt_seq_len", "max_answer_seq_len", "max_seq_len"), sequence_fits_positions
    ),
)


def violations(plan: Plan, ctx: Context) -> list[str]:
    """Every broken rule, as `rule_name: message`."""
    found = []
    for rule in RULES:
        message = rule(plan, ctx)
        if message:
            found.append(f"{rule.name}: {message}")
    return found


def validate(plan: Plan, ctx: Context) -> None:
    """Raise PlanRuleError naming the first broken rule."""
    found = violations(plan, ctx)
    if found:
        raise PlanRuleError(f"plan breaks rule {found[0]}")
