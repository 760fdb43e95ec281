"""The wheelhouse the device installs offline: under 40 MiB, one version of each distribution, installable
with --no-index, and transformers 4.48.3 from it imports over the newer hub and tokenizers of the base venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEVICE = ROOT / ".whl"
LOCAL = ROOT / f".whl-cp{sys.version_info[0]}{sys.version_info[1]}"
NEEDED = {"deepspeed", "optuna", "pydantic", "pydantic_core", "hjson", "transformers", "tokenizers", "huggingface_hub"}


def _install(wheelhouse: Path, target: Path, *extra: str) -> None:
    argv = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index", "--no-deps"]
    argv += ["--no-compile", "--no-cache-dir", "--target", str(target), *extra, *map(str, wheelhouse.glob("*.whl"))]
    env = {**os.environ, "PIP_INDEX_URL": "http://127.0.0.1:9/simple"}  # no registry to fall back on
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.skipif(not DEVICE.is_dir(), reason="no .whl: scripts/make_wheelhouse.sh fills it")
def test_the_device_wheelhouse_is_small_complete_and_installs_offline_for_python_3_12(tmp_path: Path) -> None:
    wheels = sorted(DEVICE.glob("*.whl"))
    names = [w.name.split("-")[0].lower() for w in wheels]
    assert len(names) == len(set(names))  # one version of each
    assert NEEDED <= set(names)
    assert sum(w.stat().st_size for w in wheels) < 40 * 2**20
    assert any(w.name.startswith("transformers-4.48.3-") for w in wheels)
    platform = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:"]
    platform += ["--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64"]
    _install(DEVICE, tmp_path / "site", *platform)
    assert (tmp_path / "site" / "deepspeed" / "__init__.py").exists()


@pytest.mark.skipif(not LOCAL.is_dir(), reason=f"no {LOCAL.name}: make_wheelhouse.sh --python-version X.Y")
def test_transformers_4_48_3_imports_from_the_wheelhouse_over_the_base_environment(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _install(LOCAL, site)
    code = (
        "import json, transformers, huggingface_hub, tokenizers; "
        "print(json.dumps({m.__name__: [m.__version__, m.__file__] for m in "
        "(transformers, huggingface_hub, tokenizers)}))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["transformers"][0] == "4.48.3"
    assert found["huggingface_hub"][0].startswith("0.") and found["tokenizers"][0].startswith("0.21.")
    assert all(str(site) in path for _, path in found.values())
    base = subprocess.run(
        [sys.executable, "-c", "import huggingface_hub, tokenizers; print(huggingface_hub.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert base.stdout.strip() and not base.stdout.startswith("0.")  # the base venv's hub is >= 1.0: shadowed
