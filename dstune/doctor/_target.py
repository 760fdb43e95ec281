"""`--stack VALUE` to a `catalog.Stack`: a named stack, a cluster's file, or `local` (this machine, probed).

Only `local` needs the doctor: its versions come from package metadata and its HE verdicts from the cached
probe. Everything else is data the catalog reads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..catalog import STACK_PACKAGES, Stack, named_stack, named_stacks, reference_stack, stack_from_file
from ..errors import UserInputError

LOCAL = "local"


def local_stack() -> Stack:
    """What is installed here, with the doctor's probed HE verdicts."""
    from ._cache import he_statuses
    from ._stack import package_version

    requires = {p: f"=={v}" for p in STACK_PACKAGES if (v := package_version(p.replace("_", "-")))}
    return Stack(
        name=LOCAL,
        requires=requires,
        he_verdicts={family: status.verdict for family, status in he_statuses()},
        description="this machine's installed packages",
        verdicts_from="probed on this machine (dstune doctor)",
    )


def resolve_stack(value: str) -> Stack:
    """A named stack, `local`, or a file; UserInputError (exit 2, one line) for anything else."""
    if value == LOCAL:
        return local_stack()
    if value in {s.name for s in named_stacks()}:
        return named_stack(value)
    path = Path(value)
    if path.is_file():
        return stack_from_file(path)
    if "/" in value or path.suffix in (".txt", ".json", ".in"):
        raise UserInputError(f"--stack {value}: no such file")
    return named_stack(value)


def target_stack(
    value: str | None,
    backend: str,
    family: str,
    framework: str = "deepspeed-chat",
    runs: Callable[[Stack], str] | None = None,
) -> tuple[Stack, str]:
    """(the stack the plan targets, the line that names it): profile measures here, so only `local`; simulate
    defaults to the framework's reference stack (`runs(stack)`: the stack rule the shipped script breaks)."""
    if backend == "profile":
        if value not in (None, LOCAL):
            raise UserInputError(
                f"--stack {value}: profile measures this machine's stack; leave --stack out (or pass local), "
                "or use --backend simulate to plan for another stack"
            )
        stack = resolve_stack(LOCAL)
        return stack, f"target stack: {stack.label}, this machine's (profile measures here)"
    if value is None and backend == "replay":
        stack = resolve_stack(LOCAL)
        return stack, f"target stack: {stack.label}, this machine's (replay answers from recorded trials)"
    if value is None:
        return _reference(framework, family, runs)
    stack = resolve_stack(value)
    return stack, f"target stack: {stack.label} (--stack {value})"


def _reference(framework: str, family: str, runs: Callable[[Stack], str] | None) -> tuple[Stack, str]:
    """The default target and its line; `runs(stack)` names the stack rule the shipped script breaks there ("")."""
    stack = reference_stack(framework, family, (lambda s: not runs(s)) if runs else None)
    first = reference_stack(framework, family)
    why = f"the newest {framework} stack with {family}'s Hybrid Engine kernels"
    if stack != first and runs is not None:
        why += f" on which the shipped script runs (on {first.label} it breaks {runs(first)})"
    elif runs is not None and runs(stack):
        why += f"; the shipped script breaks {runs(stack)} there"
    return stack, (
        f"target stack: {stack.label}, {why}; --stack NAME, local (this machine's) or FILE (a cluster's) to change it"
    )
