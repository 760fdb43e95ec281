"""Target frameworks: which RLHF trainer a plan is for. DeepSpeed-Chat (the step strategies) is the
default; OpenRLHF (DeepSpeed + vLLM + Ray) is the second. A framework owns its knob names, rules,
baseline scripts, export and cost terms; the CLI asks the registry, never a framework by name."""

from ._registry import (
    DEFAULT_FRAMEWORK,
    FrameworkStrategy,
    framework_names,
    framework_strategy,
    register_framework,
)

__all__ = [
    "DEFAULT_FRAMEWORK",
    "FrameworkStrategy",
    "framework_names",
    "framework_strategy",
    "register_framework",
]
