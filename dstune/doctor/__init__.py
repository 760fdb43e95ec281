"""What this stack and these GPUs really do: versions, the Hybrid Engine's kernels per model family
(asked of DeepSpeed's own policy lookup), GPUs and links, host limits, DeepSpeed ops, and the
known-broken combinations a plan may hit.

Importing this package loads no heavy library: the HE probe runs in a subprocess and is
cached per installed stack, so `he_kernels_for` is cheap after its first call.
"""

from dstune.catalog import Stack
from dstune.doctor._cache import he_kernels_for, he_status, he_statuses, stack_key
from dstune.doctor._choice import HE_KERNEL_CHOICES, resolve_he_kernels
from dstune.doctor._he import HeStatus
from dstune.doctor._known import (
    KnownIssue,
    current_stack,
    known_issue_mask,
    known_issue_masks,
    known_issues,
    match_known_issues,
)
from dstune.doctor._report import DoctorReport, Finding, FrameworkProbe, run_doctor
from dstune.doctor._stack import package_version
from dstune.doctor._target import LOCAL, local_stack, resolve_stack, target_stack

__all__ = [
    "HE_KERNEL_CHOICES",
    "DoctorReport",
    "Finding",
    "FrameworkProbe",
    "HeStatus",
    "LOCAL",
    "KnownIssue",
    "Stack",
    "current_stack",
    "he_kernels_for",
    "he_status",
    "he_statuses",
    "known_issue_mask",
    "local_stack",
    "known_issue_masks",
    "known_issues",
    "match_known_issues",
    "package_version",
    "resolve_he_kernels",
    "resolve_stack",
    "run_doctor",
    "stack_key",
    "target_stack",
]
