"""The Hybrid Engine kernel assumption a prediction makes: the user's word, else the doctor's probe."""

from __future__ import annotations

from dstune.doctor._cache import he_kernels_for

HE_KERNEL_CHOICES = ("yes", "no", "auto")


def resolve_he_kernels(choice: str, family: str) -> tuple[bool, str]:
    """(assume HE kernels?, the sentence that says why), for estimate and search alike."""
    if choice == "yes":
        return True, "assumes the Hybrid Engine's inference kernels run (--he-kernels yes)"
    if choice == "no":
        return False, "Hybrid Engine generation without its inference kernels (--he-kernels no)"
    kernels, reason = he_kernels_for(family)
    verdict = "with" if kernels else "without"
    return kernels, f"Hybrid Engine generation {verdict} its inference kernels on this stack (doctor: {reason})"
