"""The study record: typed trial rows, their figures and the files that hold them (trials.csv, plan.json).

Everything that writes or reads a study (search, export, report, replay, calibration,
the tests' fixtures) goes through this package, so a figure's basis (measured or
predicted) and the file schema are defined once.
"""

from ._figures import Basis, Figures, interval_from_log
from ._files import (
    SCHEMA_VERSION,
    StoredTrial,
    atomic_write,
    check_plan_schema,
    dump_json,
    now_iso,
    read_plan_json,
    read_trials_csv,
    trials_csv_text,
    versions,
)
from ._noise import LEVEL, MeasuredRatio, paired_ratio, run_ratio, throughput_interval
from ._status import FAILED, MEASURED_STATUSES, Status
from ._trial import TrialRow

__all__ = [
    "FAILED",
    "LEVEL",
    "MEASURED_STATUSES",
    "MeasuredRatio",
    "SCHEMA_VERSION",
    "Basis",
    "Figures",
    "Status",
    "StoredTrial",
    "TrialRow",
    "atomic_write",
    "check_plan_schema",
    "dump_json",
    "interval_from_log",
    "now_iso",
    "paired_ratio",
    "read_plan_json",
    "read_trials_csv",
    "run_ratio",
    "throughput_interval",
    "trials_csv_text",
    "versions",
]
