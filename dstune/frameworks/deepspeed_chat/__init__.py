"""DeepSpeed-Chat, the default framework: its knobs are the step strategies' plan fields, its commands
run over the shared machinery (plan, cost model, profile, search, export, report)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ...steps import DpoPlan, PpoPlan, RmPlan, SftPlan
from .._base import CommandResult, Framework
from .._registry import register_framework
from ._estimate import run_estimate
from ._options import EstimateOptions, ProfileOptions, SearchFlags
from ._profile import run_profile
from ._search import run_search, write_files


@register_framework
class DeepSpeedChat(Framework):
    name = "deepspeed-chat"
    title = "DeepSpeed-Chat"
    supported_versions = ("DeepSpeedExamples master (applications/DeepSpeed-Chat, unchanged since 2025-07)",)
    options = {"estimate": EstimateOptions, "profile": ProfileOptions, "search": SearchFlags}

    def knob_names(self) -> frozenset[str]:
        return frozenset(f.name for plan in (SftPlan, RmPlan, PpoPlan, DpoPlan) for f in dataclasses.fields(plan))

    def estimate(self, options: EstimateOptions) -> CommandResult:
        """Predict per-GPU memory by component, host memory, phase times, throughput and MFU
        of one DeepSpeed-Chat plan. Knobs use DeepSpeed-Chat's flag names, e.g.
          dstune estimate --model opt-6.7b --gpus 8 --set actor_zero_stage=3 --set enable_hybrid_engine=true"""
        return run_estimate(options)

    def profile(self, options: ProfileOptions) -> CommandResult:
        """Launch one trial (a fresh process group via the deepspeed launcher or torchrun) that
        builds the DeepSpeed-Chat models with random weights, runs --warmup then --steps
        steps on synthetic tokens, and reports phase times, memory and throughput next to
        the cost model's prediction. Exit 0 when the trial is ok, 1 when it is not
        (oom / timeout / error / crashed), 2 for invalid input (nothing is launched). E.g.
          dstune profile --model opt-1.3b --gpus 8 --set actor_zero_stage=3
          DS_ACCELERATOR=cpu dstune profile --model tiny-opt --gpus 2 --set dtype=bf16"""
        return run_profile(options)

    def search(self, options: SearchFlags) -> CommandResult:
        """Search a space of DeepSpeed-Chat knobs (search_spaces/<step>.yaml) with an Optuna study seeded
        by DeepSpeed-Chat's shipped settings, then write DeepSpeed configs, the launch script,
        plan.json, trials.csv and the report (report.html, report.md). Rerunning the same
        command continues the same study. Every candidate trains the baseline's job (what is
        trained, prompts per iteration, samples per update) unless --set, --global-batch or
        --explore changes it; the simulate backend scores every candidate exactly.
          dstune search --model opt-6.7b --gpus 8
          DS_ACCELERATOR=cpu dstune search --model tiny-opt --gpus 2 --backend profile --trials 4"""
        return run_search(self, options)

    def export(self, result: Any, out: Path) -> list[str]:
        """DeepSpeed configs, launch script, plan.json, trials.csv, then the report, from one SearchResult."""
        return write_files(result, out)
