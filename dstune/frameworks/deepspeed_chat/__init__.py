"""DeepSpeed-Chat, the default framework: its knobs are the step strategies' plan fields, unchanged."""

from __future__ import annotations

import dataclasses

from ...steps import DpoPlan, PpoPlan, RmPlan, SftPlan
from .._registry import FrameworkStrategy, register_framework


@register_framework
class DeepSpeedChat(FrameworkStrategy):
    name = "deepspeed-chat"
    title = "DeepSpeed-Chat"
    supported_versions = ("DeepSpeedExamples master (applications/DeepSpeed-Chat, unchanged since 2025-07)",)

    def knob_names(self) -> frozenset[str]:
        return frozenset(f.name for plan in (SftPlan, RmPlan, PpoPlan, DpoPlan) for f in dataclasses.fields(plan))
