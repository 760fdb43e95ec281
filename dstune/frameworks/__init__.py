"""Target frameworks: which RLHF trainer a plan is for. Each is one folder behind the small `Framework`
base (dstune.frameworks._base): DeepSpeed-Chat (the default) and OpenRLHF (DeepSpeed + vLLM + Ray).
The CLI resolves `--framework` to one registered instance; nothing below names a framework."""

from ._base import COMMANDS, CommandOptions, CommandResult, Framework
from ._flags import add_flags, flag, flag_names, options_from
from ._registry import (
    DEFAULT_FRAMEWORK,
    check_knobs,
    foreign_option,
    framework_names,
    frameworks,
    get_framework,
    load_plugins,
    register_framework,
)

__all__ = [
    "COMMANDS",
    "DEFAULT_FRAMEWORK",
    "CommandOptions",
    "CommandResult",
    "Framework",
    "add_flags",
    "check_knobs",
    "flag",
    "flag_names",
    "foreign_option",
    "framework_names",
    "frameworks",
    "get_framework",
    "load_plugins",
    "options_from",
    "register_framework",
]
