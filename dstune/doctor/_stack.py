"""The installed software stack: versions read cheaply from package metadata, and CUDA/NCCL from torch."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES: tuple[str, ...] = (
    "torch",
    "deepspeed",
    "transformers",
    "tokenizers",
    "huggingface_hub",
    "accelerate",
    "optuna",
    "numpy",
    "nvidia-ml-py",
)
"""Distributions whose versions change what a measurement or a prediction means (a saved `doctor --json`
is a `--stack` file: it must carry catalog.STACK_PACKAGES; the packages a target framework adds come from that framework)."""

PROBE_KEY_PACKAGES: tuple[str, ...] = ("deepspeed", "transformers", "torch")
"""The versions that decide DeepSpeed's inference-policy lookup (the HE probe's cache key)."""


def package_version(name: str) -> str | None:
    """Installed version from metadata (no import, so no torch start-up cost); None when absent."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def installed_versions() -> dict[str, str | None]:
    """Python and the key packages, without importing any of them."""
    from .. import __version__

    found: dict[str, str | None] = {"python": platform.python_version(), "dstune": __version__}
    found.update({name: package_version(name) for name in PACKAGES})
    return found


def runtime_versions() -> dict[str, str | None]:
    """What only an imported torch knows: the CUDA it was built with and NCCL's version (None on CPU builds)."""
    try:
        import torch
    except ImportError:
        return {"torch_cuda": None, "nccl": None}
    cuda = getattr(torch.version, "cuda", None)
    nccl = None
    if cuda:
        try:
            raw = torch.cuda.nccl.version()
            nccl = ".".join(str(part) for part in raw) if isinstance(raw, tuple) else str(raw)
        except Exception:  # noqa: BLE001 - a CUDA build without NCCL, or no driver
            nccl = None
    return {"torch_cuda": cuda, "nccl": nccl}
