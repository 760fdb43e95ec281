"""The released OpenRLHF 0.11.2 wheel, read in place (never installed): `bash scripts/setup.sh --test`
downloads it into .wheels/ (`pip download --no-deps openrlhf==0.11.2 -d .wheels`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dstune.export._openrlhf_parser import CONFIG, ENTRY, find_wheel, wheel_source

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def wheel() -> Path:
    folders = [ROOT / ".wheels"] + ([Path(os.environ["DSTUNE_WHEELS"])] if "DSTUNE_WHEELS" in os.environ else [])
    found = find_wheel("0.11.2", folders)
    if found is None:
        pytest.skip("openrlhf-0.11.2 wheel absent from .wheels/: run `bash scripts/setup.sh --test` (it downloads it)")
    return found


@pytest.fixture(scope="session")
def sources(wheel: Path) -> tuple[str, str]:
    return wheel_source(wheel, ENTRY), wheel_source(wheel, CONFIG)
