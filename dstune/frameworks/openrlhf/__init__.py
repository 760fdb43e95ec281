"""OpenRLHF (DeepSpeed ZeRO training, vLLM generation, Ray placement) as a target framework.

It owns its flags (dotted names of the supported version), its checks, its shipped examples as
baselines; its cost terms live in dstune.frameworks.openrlhf._cost* and its launch script in
dstune.frameworks.openrlhf._export, named here by import path as step strategies name theirs."""

from __future__ import annotations

from .._registry import FrameworkStrategy, register_framework
from ._doctor import FRAMEWORK_PACKAGES, framework_findings
from ._examples import Example, baseline_for, examples, plan_from_argv, script_argv
from ._plan import LIST_FLAGS, PLACEMENTS, OpenRLHFJob, OpenRLHFPlan, make_plan, parse_value
from ._rules import CHECKS, OpenRLHFCheckError, broken_checks, parser_notes, plan_known_issues, validate
from ._spec import Algorithm, OpenRLHFSpec, PaperRow, PublishedSource, openrlhf_spec, paper_rows, published_sources


@register_framework
class OpenRLHF(FrameworkStrategy):
    name = "openrlhf"
    title = "OpenRLHF"
    supported_versions = openrlhf_spec().supported_versions
    cost_function = "dstune.frameworks.openrlhf._cost:estimate_openrlhf"
    export_function = "dstune.frameworks.openrlhf._export:launch_script"
    packages = FRAMEWORK_PACKAGES

    def doctor_findings(self, versions: dict[str, str | None]) -> list[tuple[str, str, str]]:
        return framework_findings(versions)

    def knob_names(self) -> frozenset[str]:
        return frozenset(openrlhf_spec().defaults)


__all__ = [
    "CHECKS",
    "LIST_FLAGS",
    "PLACEMENTS",
    "Algorithm",
    "Example",
    "OpenRLHF",
    "OpenRLHFCheckError",
    "OpenRLHFJob",
    "OpenRLHFPlan",
    "OpenRLHFSpec",
    "PublishedSource",
    "baseline_for",
    "broken_checks",
    "examples",
    "make_plan",
    "openrlhf_spec",
    "parse_value",
    "parser_notes",
    "plan_known_issues",
    "plan_from_argv",
    "script_argv",
    "paper_rows",
    "published_sources",
    "PaperRow",
    "validate",
]
