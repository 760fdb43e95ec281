"""One candidate's knobs (DeepSpeed-Chat flag names), its hard rules, its DeepSpeed configs, and the
step strategies that own what differs between SFT, RM, PPO and DPO."""

from ._baseline import Baseline, baseline_plan, nearest_script
from ._deepspeed import eval_config, frozen_stage, to_deepspeed, train_config
from ._inert import Inert, redundant_rows
from ._job import Job, batch_columns, batch_figures, job_codes, job_knobs, job_of
from ._knobs import DTYPE, NON_NEGATIVE, POSITIVE, ZERO, Plan, knob, knob_fields, plan_class, plan_to_dict
from ._parse import coerce_knob, describe_knob, make_plan, parse_assignments, unknown_knob_error
from ._recipe import parse_script, recipe, system_flags
from ._rules import (
    SHARED_RULES,
    Context,
    Rule,
    RuleBreak,
    rule_reads,
    rules_for,
    stack_violations,
    validate,
    violations,
)
from ._step import (
    DEFAULT_STEP,
    BaselineScript,
    BatchShape,
    CostTerms,
    LoraRole,
    ScriptSpec,
    StepStrategy,
    lora_module_for,
    register_step,
    step_names,
    step_strategy,
)

__all__ = [
    "DEFAULT_STEP",
    "DTYPE",
    "NON_NEGATIVE",
    "POSITIVE",
    "SHARED_RULES",
    "ZERO",
    "Baseline",
    "BaselineScript",
    "BatchShape",
    "Context",
    "CostTerms",
    "Inert",
    "Job",
    "LoraRole",
    "Plan",
    "Rule",
    "ScriptSpec",
    "StepStrategy",
    "baseline_plan",
    "batch_columns",
    "batch_figures",
    "coerce_knob",
    "describe_knob",
    "eval_config",
    "frozen_stage",
    "job_codes",
    "job_knobs",
    "job_of",
    "knob",
    "knob_fields",
    "lora_module_for",
    "make_plan",
    "nearest_script",
    "parse_script",
    "recipe",
    "system_flags",
    "parse_assignments",
    "plan_class",
    "plan_to_dict",
    "redundant_rows",
    "register_step",
    "rule_reads",
    "rules_for",
    "step_names",
    "step_strategy",
    "to_deepspeed",
    "train_config",
    "unknown_knob_error",
    "RuleBreak",
    "stack_violations",
    "validate",
    "violations",
]
