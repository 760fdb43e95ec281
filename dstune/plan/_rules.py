"""DeepSpeed-Chat's hard rules: plans that break them are infeasible, not merely slow.

Each rule is a small function returning a message or None, so the search can
ask "why is this candidate out?" and the CLI can name the rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import PlanRuleError
from ._knobs import Plan
from ._step import step_strategy

if TYPE_CHECKING:
    from ..catalog import ModelSpec, Stack


@dataclass(frozen=True)
class Context:
    """What the rules need besides the knobs."""

    world_size: int
    model: ModelSpec | None = None
    critic_model: ModelSpec | None = None
    stack: Stack | None = None
    """The stack the plan will run on (its stack rules read it); None: the installed one."""


PlanT = TypeVar("PlanT", bound=Plan)


@dataclass(frozen=True)
class Rule(Generic[PlanT]):
    """A hard rule and the knobs it reads: the search evaluates it once per distinct combination of
    those knobs, so `reads` must name every knob `check` looks at (a test compares with brute force).
    A step's own rules check that step's plan class (`Rule[PpoPlan]`); shared ones any `Plan`."""

    name: str
    reads: tuple[str, ...]
    check: Callable[[PlanT, Context], str | None]
    stack: bool = False
    """A limit of the target stack's DeepSpeed (`Context.stack`), not of DeepSpeed-Chat's flags: a shipped
    script may break it. Its baseline stays the baseline (what users run), labelled unable to run on that
    stack, and is never the pick."""
    sources: tuple[str, ...] = ()
    """Where the code says so (for a stack rule, cited wherever a baseline is labelled by it)."""

    def __call__(self, plan: PlanT, ctx: Context) -> str | None:
        return self.check(plan, ctx)


def _lora_dims(plan: Plan) -> list[tuple[str, int, str]]:
    """(model, rank, module_name) for every trained model of the plan's step."""
    roles = step_strategy(plan.step).lora_roles
    return [(r.model, getattr(plan, r.rank), getattr(plan, r.module)) for r in roles]


def _zero_stages(plan: Plan) -> list[tuple[str, int]]:
    return [(name, getattr(plan, name)) for name in step_strategy(plan.step).zero_stage_knobs]


def only_lora_needs_lora(plan: Plan, ctx: Context) -> str | None:
    only = plan.only_optimize_lora
    if only and all(rank == 0 for _, rank, _ in _lora_dims(plan)):
        ranks = " / ".join(r.rank for r in step_strategy(plan.step).lora_roles)
        return f"only_optimize_lora=true needs a LoRA rank > 0 ({ranks})"
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
    models = {"actor": ctx.model, "critic": ctx.critic_model}
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


SHARED_RULES: tuple[Rule[Plan], ...] = (
    Rule("only_lora_needs_lora", ("only_optimize_lora", "*lora_rank"), only_lora_needs_lora),
    Rule("offload_needs_zero", ("offload", "*zero_stage"), offload_needs_zero),
    Rule("lora_modules_exist", ("*lora_rank", "*lora_module"), lora_modules_exist),
    Rule("sequence_fits_positions", ("*sequence",), sequence_fits_positions),
)
"""Rules every step has; `*name` in `reads` stands for the step's knobs of that kind (see `rule_reads`)."""


def rules_for(step: str) -> tuple[Rule[Any], ...]:
    """The step's rules; its own check its plan class, which `make_plan(step, ...)` builds."""
    return SHARED_RULES + step_strategy(step).rules()


def rule_reads(rule: Rule[Any], step: str) -> tuple[str, ...]:
    """The knobs a rule reads for this step, with the `*kind` placeholders expanded."""
    strategy = step_strategy(step)
    kinds = {
        "*lora_rank": tuple(r.rank for r in strategy.lora_roles),
        "*lora_module": tuple(r.module for r in strategy.lora_roles),
        "*zero_stage": strategy.zero_stage_knobs,
        "*sequence": strategy.sequence_knobs,
    }
    return tuple(name for read in rule.reads for name in kinds.get(read, (read,)))


def violations(plan: Plan, ctx: Context, *, stack: bool = True) -> list[str]:
    """Every broken rule, as `rule_name: message` (stack=False: leave out the installed DeepSpeed's limits)."""
    found = []
    for rule in rules_for(plan.step):
        if rule.stack and not stack:
            continue
        message = rule(plan, ctx)
        if message:
            found.append(f"{rule.name}: {message}")
    return found


@dataclass(frozen=True)
class RuleBreak:
    """A stack rule a plan breaks: which, why, and where the code says so."""

    rule: str
    message: str
    sources: tuple[str, ...] = ()


def stack_violations(plan: Plan, ctx: Context) -> tuple[RuleBreak, ...]:
    """The installed DeepSpeed's limits the plan breaks (a shipped baseline may)."""
    found = []
    for rule in rules_for(plan.step):
        message = rule(plan, ctx) if rule.stack else None
        if message:
            found.append(RuleBreak(rule.name, message, rule.sources))
    return tuple(found)


def validate(plan: Plan, ctx: Context) -> None:
    """Raise PlanRuleError naming the first broken rule."""
    found = violations(plan, ctx)
    if found:
        raise PlanRuleError(f"plan breaks rule {found[0]}")
