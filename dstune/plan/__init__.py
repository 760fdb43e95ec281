"""One candidate's knobs (DeepSpeed-Chat flag names), its hard rules and its DeepSpeed configs."""

from ._deepspeed import eval_config, frozen_stage, to_deepspeed, train_config
from ._inert import INERT, redundant_rows
from ._job import BATCH_FIGURES, Job, batch_columns, job_codes, job_knobs, job_of
from ._knobs import PLAN_CLASSES, STEPS, Plan, PpoPlan, RmPlan, SftPlan, knob_fields, plan_class, plan_to_dict
from ._parse import coerce_knob, describe_knob, make_plan, parse_assignments, unknown_knob_error
from ._rules import RULES, Context, validate, violations

__all__ = [
    "INERT",
    "redundant_rows",
    "BATCH_FIGURES",
    "Job",
    "batch_columns",
    "job_codes",
    "job_knobs",
    "job_of",
    "PLAN_CLASSES",
    "RULES",
    "STEPS",
    "Context",
    "Plan",
    "PpoPlan",
    "RmPlan",
    "SftPlan",
    "coerce_knob",
    "describe_knob",
    "eval_config",
    "frozen_stage",
    "knob_fields",
    "make_plan",
    "parse_assignments",
    "plan_class",
    "plan_to_dict",
    "to_deepspeed",
    "train_config",
    "unknown_knob_error",
    "validate",
    "violations",
]
