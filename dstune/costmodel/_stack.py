"""Facts of the target software stack that cost terms depend on: which transformers runs the forwards.

`transformers_version` "" means the stack `CostConstants.published_stack` selects: the published rows'
transformers 4.28.1, or the installed one. A target stack record can pass its own version instead.
"""

from __future__ import annotations

from importlib import metadata

import numpy as np

from ._constants import CostConstants

PUBLISHED_TRANSFORMERS = "4.28.1"
"""The transformers DeepSpeed-Chat's published runs used (its requirements.txt pin in 2023)."""


def installed_transformers() -> str:
    try:
        return metadata.version("transformers")
    except metadata.PackageNotFoundError:
        return PUBLISHED_TRANSFORMERS


def transformers_version(c: CostConstants, override: str = "") -> str:
    """The version whose forwards the terms follow: `override` if given, else the stack `c` selects."""
    if override:
        return override
    return PUBLISHED_TRANSFORMERS if c.published_stack >= 0.5 else installed_transformers()


def forward_returns_cache(version: str, checkpointed_training: np.ndarray | bool) -> np.ndarray:
    """Whether a forward without `use_cache=False` hands back a full-sequence KV cache (config.use_cache is
    True for OPT and LLaMA). transformers 4.x drops it in a model that is training with gradient checkpointing
    ("`use_cache=True` is incompatible with gradient checkpointing. Setting `use_cache=False`"); 5.x returns it
    whatever the mode (measured on 4.48.3 and 5.25.0: tests/costmodel/test_experience_outputs.py)."""
    major = int(version.split(".")[0])
    dropped = np.asarray(checkpointed_training, dtype=bool) & (major < 5)
    return ~dropped
