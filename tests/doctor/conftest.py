"""Doctor tests keep the HE probe's cache in a temporary folder, never the user's."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from dstune.doctor import he_statuses

    monkeypatch.setenv("DSTUNE_CACHE_DIR", str(tmp_path / "cache"))
    he_statuses.cache_clear()
    yield tmp_path / "cache"
    he_statuses.cache_clear()
