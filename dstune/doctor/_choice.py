"""The Hybrid Engine kernel assumption a prediction makes: the user's word, else the doctor's verdict."""

from __future__ import annotations

from dstune.doctor._cache import he_kernels_for, he_status

HE_KERNEL_CHOICES = ("yes", "no", "auto")


def resolve_he_kernels(choice: str, family: str) -> tuple[bool, str]:
    """(assume HE kernels?, the sentence that says why), for estimate and search alike.

    yes/no only set the cost model's assumption; they do not change what the stack does. auto follows the
    verdict: kernels -> with, no kernels -> without, broken -> predicted with the kernels (as the plan runs
    on a stack where it works, constraints/he.txt) and said to crash here.
    """
    if choice == "yes":
        return True, "assumes the Hybrid Engine's inference kernels run (--he-kernels yes)"
    if choice == "no":
        return False, "Hybrid Engine generation without its inference kernels (--he-kernels no)"
    if he_status(family).verdict == "broken":
        return True, (
            f"Hybrid Engine generation crashes on this stack (doctor: {family} verdict broken); HE plans are "
            "predicted as they run with its inference kernels on constraints/he.txt's stack (transformers 4.48.3)"
        )
    kernels, reason = he_kernels_for(family)
    verdict = "with" if kernels else "without"
    return kernels, f"Hybrid Engine generation {verdict} its inference kernels on this stack (doctor: {reason})"
