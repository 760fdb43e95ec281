"""The Hybrid Engine kernel assumption a prediction makes: the user's word, else the target stack's verdict."""

from __future__ import annotations

from ..catalog import SETTLE, Stack

HE_KERNEL_CHOICES = ("yes", "no", "auto")


def resolve_he_kernels(choice: str, family: str, stack: Stack | None = None) -> tuple[bool, str]:
    """(assume HE kernels?, the sentence that says why), for estimate and search alike.

    yes/no only set the cost model's assumption; they do not change what the stack does. auto follows the
    target stack's verdict (`local`, the installed one, when none is given): kernels -> with, no kernels ->
    without, broken -> predicted with the kernels and said to crash there (its HE plans hit he_broken_stack),
    unknown -> predicted with the kernels, said so, with how to settle it.
    """
    if choice == "yes":
        return True, "assumes the Hybrid Engine's inference kernels run (--he-kernels yes)"
    if choice == "no":
        return False, "Hybrid Engine generation without its inference kernels (--he-kernels no)"
    if stack is None:
        from ._target import local_stack

        stack = local_stack()
    verdict = stack.he_verdict(family)
    where = f"on stack {stack.label}"
    if verdict is None:
        return True, (
            f"the Hybrid Engine verdict for {family} {where} is unknown (no recorded or probed verdict); "
            f"predictions assume its inference kernels run; {SETTLE}"
        )
    if verdict == "broken":
        return True, (
            f"Hybrid Engine generation crashes {where} ({family} verdict broken, {stack.verdicts_from}); HE plans "
            "are predicted as they run with its inference kernels on constraints/he.txt's stack (--stack he)"
        )
    kernels = verdict == "kernels"
    return kernels, (
        f"Hybrid Engine generation {'with' if kernels else 'without'} its inference kernels {where} "
        f"({family}: {verdict}, {stack.verdicts_from})"
    )
