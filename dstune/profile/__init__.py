"""Real measurements: short SFT / RM / PPO steps on DeepSpeed, one isolated process group per trial.

`run_trial` launches the worker (`python -m dstune.profile.worker`) with the
deepspeed launcher (or torchrun) and returns a typed `TrialResult`. Importing
this package loads neither torch nor DeepSpeed; the worker does.
"""

from ._launch import LAUNCHERS
from ._result import CPU_NOTE, TrialResult, read_result
from ._trial import run_trial, trial_device

__all__ = ["CPU_NOTE", "LAUNCHERS", "TrialResult", "read_result", "run_trial", "trial_device"]
