"""`he_kernels_for(family)`: the HE probe's answer, cached on disk per installed stack.

The probe imports torch, transformers and DeepSpeed (seconds); the answer only
changes when one of them is upgraded, so it is keyed by their versions read from
package metadata and stored under ~/.cache/dstune (or $DSTUNE_CACHE_DIR). The probe
runs in a subprocess, so a caller such as `dstune estimate` never imports torch.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

from ._he import HeStatus
from ._stack import PROBE_KEY_PACKAGES, package_version

PROBE_SCHEMA = 2
"""Bump when the probe's logic changes, so old answers are not reused."""
CACHE_FILE = "he_probe.json"
PROBE_TIMEOUT_S = 300


def cache_dir() -> Path:
    return Path(os.environ.get("DSTUNE_CACHE_DIR") or Path.home() / ".cache" / "dstune")


_SAID: list[str] = []


def say_unwritable(error: OSError) -> None:
    """One line on stderr, once per process, when the cache cannot be written: every command then redoes
    the work the cache would keep (the HE probe, DeepSpeed's config checks), which is slower but correct."""
    if _SAID:
        return
    _SAID.append(str(cache_dir()))
    print(
        f"dstune: cache folder {cache_dir()} is not writable ({error.strerror or error}); checks it would keep "
        "are redone on every run (slower): set DSTUNE_CACHE_DIR to a writable folder",
        file=sys.stderr,
    )


def stack_key() -> str:
    """e.g. 'v2 deepspeed=0.19.8 transformers=5.23.0 torch=2.13.0+cpu'."""
    return " ".join([f"v{PROBE_SCHEMA}"] + [f"{p}={package_version(p)}" for p in PROBE_KEY_PACKAGES])


def _read_cache() -> dict[str, dict]:
    try:
        data = json.loads((cache_dir() / CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(key: str, statuses: dict[str, HeStatus]) -> None:
    """Atomic, and never fatal: a read-only home only costs a re-probe next time (said once)."""
    data = _read_cache()
    data[key] = {family: status.to_json() for family, status in statuses.items()}
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        tmp = cache_dir() / f"{CACHE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, cache_dir() / CACHE_FILE)
    except OSError as error:
        say_unwritable(error)


def _probe_in_subprocess() -> dict[str, HeStatus]:
    env = {**os.environ, "DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR") or _accelerator()}
    done = subprocess.run(
        [sys.executable, "-m", "dstune.doctor._he"], capture_output=True, text=True, env=env, timeout=PROBE_TIMEOUT_S
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"HE probe exited {done.returncode}: {tail}")
    return {family: HeStatus.from_json(item) for family, item in json.loads(done.stdout).items()}


def _accelerator() -> str:
    """cuda where NVML sees a GPU (the probe then runs its real HE step), else DeepSpeed's CPU accelerator."""
    from ._system import detect_gpus

    return "cuda" if detect_gpus()[0] else "cpu"


def cached_he_status(family: str) -> HeStatus | None:
    """The stored answer for this stack, or None; never probes (for processes that must stay quick)."""
    item = _read_cache().get(stack_key(), {}).get(family)
    return HeStatus.from_json(item) if item else None


@functools.lru_cache(maxsize=1)
def he_statuses(refresh: bool = False) -> tuple[tuple[str, HeStatus], ...]:
    """Every family's status for the installed stack: from the disk cache, else probed once and stored."""
    key = stack_key()
    cached = None if refresh else _read_cache().get(key)
    if cached:
        return tuple((family, HeStatus.from_json(item)) for family, item in cached.items())
    try:
        statuses = _probe_in_subprocess()
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as error:
        from ..catalog import SUPPORTED_MODEL_TYPES

        reason = f"probe failed: {error}"
        return tuple((f, HeStatus(family=f, policy_found=None, reason=reason)) for f in SUPPORTED_MODEL_TYPES)
    if all(status.policy_found is not None for status in statuses.values()):
        _write_cache(key, statuses)
    return tuple(statuses.items())


def he_status(family: str) -> HeStatus:
    for name, status in he_statuses():
        if name == family:
            return status
    return HeStatus(family=family, policy_found=None, reason=f"family {family!r} was not probed")


def he_kernels_for(family: str) -> tuple[bool, str]:
    """(whether HE generation uses DeepSpeed's inference kernels for `family` here, why).

    Unknown (probe failed) counts as True, the cost model's historical assumption, and the
    reason says so.
    """
    status = he_status(family)
    if status.policy_found is None:
        return True, f"assuming HE kernels: {status.reason}"
    return status.policy_found, status.reason
