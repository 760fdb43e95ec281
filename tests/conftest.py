"""Tests exercise the real DeepSpeed code path on the CPU accelerator unless told otherwise."""

import os

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
