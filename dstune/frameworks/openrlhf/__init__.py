"""OpenRLHF (DeepSpeed ZeRO training, vLLM generation, Ray placement) as a target framework.

It owns its flags (dotted names of the supported version), its checks, its shipped examples as
baselines, its cost model (_cost*), search (_search, _explore), export (_export, _parser), options,
records and renderers, and its doctor findings: everything OpenRLHF is in this folder."""

from __future__ import annotations

from pathlib import Path

from .._base import CommandResult, Framework
from .._registry import register_framework
from ._commands import run_estimate, run_search
from ._doctor import FRAMEWORK_PACKAGES, framework_findings
from ._examples import Example, baseline_for, examples, plan_from_argv, script_argv
from ._export import write_files
from ._options import EstimateOptions, SearchOptions
from ._plan import LIST_FLAGS, PLACEMENTS, OpenRLHFJob, OpenRLHFPlan, make_plan, parse_value
from ._records import OpenRLHFEstimate, OpenRLHFSearch
from ._rules import CHECKS, OpenRLHFCheckError, broken_checks, parser_notes, plan_known_issues, validate
from ._spec import Algorithm, OpenRLHFSpec, PaperRow, PublishedSource, openrlhf_spec, paper_rows, published_sources


@register_framework
class OpenRLHF(Framework):
    name = "openrlhf"
    title = "OpenRLHF"
    supported_versions = openrlhf_spec().supported_versions
    options = {"estimate": EstimateOptions, "search": SearchOptions}
    packages = FRAMEWORK_PACKAGES
    knob_word = "flag"
    instead = {
        "--global-batch": "for OpenRLHF set the job with --set rollout.batch_size=N",
        "--step": "OpenRLHF plans take --algo and dotted --set flags",
    }

    def knob_names(self) -> frozenset[str]:
        return frozenset(openrlhf_spec().defaults)

    def estimate(self, options: EstimateOptions) -> CommandResult:
        """Predict an OpenRLHF plan (DeepSpeed training, vLLM generation, Ray placement): memory per GPU
        group and phase, the phase timeline, throughput. The plan is the shipped example that trains the
        job, dstune's starter, or --script's arguments; --set takes OpenRLHF's dotted flags, e.g.
          dstune estimate --framework openrlhf --model llama-3-8b --gpus 8 --algo grpo --set ds.zero_stage=2"""
        return run_estimate(options)

    def search(self, options: SearchOptions) -> CommandResult:
        """Score every plan of search_spaces/openrlhf.yaml for the baseline's job with the cost model
        (exhaustive, vectorised; no trials), then write run_openrlhf.sh (which OpenRLHF's own parser
        accepts), requirements.txt and plan.json. --explore also scores other jobs, e.g.
          dstune search --framework openrlhf --model llama-3-8b --gpus 8 --algo grpo"""
        return run_search(self, options)

    def export(self, result: OpenRLHFSearch, out: Path) -> list[str]:
        """run_openrlhf.sh (checked by DeepSpeed's config class and pinned to the stack), requirements.txt,
        plan.json."""
        return write_files(result, out)

    def doctor_findings(self, versions: dict[str, str | None]) -> list[tuple[str, str, str]]:
        return framework_findings(versions)


__all__ = [
    "CHECKS",
    "LIST_FLAGS",
    "PLACEMENTS",
    "Algorithm",
    "Example",
    "OpenRLHF",
    "OpenRLHFCheckError",
    "OpenRLHFEstimate",
    "OpenRLHFSearch",
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
