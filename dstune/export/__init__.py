"""Export a search's pick for production: DeepSpeed JSON per role, the DeepSpeed-Chat launch script,
plan.json and trials.csv. Everything is built and validated in memory, written into a temporary
folder inside --out, and only then moved into place file by file (os.replace), so a failure leaves
the previous export untouched and no half-written file."""

from ._configs import ConfigRejected, role_configs, validate_config
from ._deepspeed_check import start_checker, stop_checker
from ._export import ExportInfo, check_writable, plan_payload, prediction_errors, write_export
from ._files import atomic_write, check_same_study, trials_table, versions
from ._script import launch_script, plan_flags

__all__ = [
    "ConfigRejected",
    "ExportInfo",
    "atomic_write",
    "check_same_study",
    "check_writable",
    "launch_script",
    "plan_flags",
    "plan_payload",
    "prediction_errors",
    "role_configs",
    "start_checker",
    "stop_checker",
    "trials_table",
    "validate_config",
    "versions",
    "write_export",
]
