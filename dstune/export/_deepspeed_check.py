"""DeepSpeed's own config class, run early in a process of its own.

Importing `deepspeed.runtime.config` costs an import of torch and deepspeed, about as long as a whole
simulated search. A search that will export in seconds starts this checker first; it pays the import
while the search runs, then checks the pick's configs as soon as they are sent. Without a checker, or
when it died or answered nothing, the configs are checked in this process (the import paid here).
The configs are always checked by `DeepSpeedConfig` itself, never by a copy of its rules; a set of
configs it accepted is remembered under the dstune cache, keyed by the exact JSON, the world size and
the installed deepspeed, pydantic and torch, so the same export on the same stack is not checked twice.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._configs import ConfigRejected, validate_config

ANSWER_TIMEOUT_S = 300.0
CHECK_SCHEMA = 2
"""Bump when validate_config's own checks change, so remembered answers are not reused."""
ACCEPTED_FILE = "accepted_ds_configs.json"
ACCEPTED_KEPT = 500
STACK = ("deepspeed", "pydantic", "torch")
BACKGROUND_NICE = 10
_checker: subprocess.Popen[str] | None = None


def quiet_deepspeed() -> None:
    """Without a GPU DeepSpeed warns 'Setting accelerator to CPU' on import; validating a config needs no
    accelerator, so name the CPU one and keep the user's screen clean."""
    if "DS_ACCELERATOR" in os.environ:
        return
    import torch

    if not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"


def start_checker() -> None:
    """Start the checker process (once); `check_configs` uses it when it is asked next."""
    global _checker
    if _checker is not None:
        return
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    try:
        _checker = subprocess.Popen(
            [sys.executable, "-m", "dstune.export._deepspeed_check"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=_background,
        )
    except OSError:
        return  # no checker: the configs are checked in this process
    atexit.register(stop_checker)


def _background() -> None:
    """Speculative work yields to the search on a busy machine (on an idle one it has a core of its own)."""
    os.nice(BACKGROUND_NICE)


def stop_checker() -> None:
    """End a checker that was never asked (the search found no pick, or failed)."""
    global _checker
    proc, _checker = _checker, None
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.communicate()


def check_configs(items: list[tuple[dict[str, Any], int]]) -> None:
    """Validate each (config, world size) with DeepSpeedConfig; ConfigRejected names the first refusal."""
    key = accepted_key(items)
    if key in _accepted():
        stop_checker()
        return
    error = _ask_checker(items)
    if error is _NO_ANSWER:
        quiet_deepspeed()
        for config, world_size in items:
            validate_config(config, world_size)
    elif error is not None:
        raise ConfigRejected(str(error))
    _remember(key)


def accepted_key(items: list[tuple[dict[str, Any], int]]) -> str:
    """The configs' exact JSON and world sizes, and the stack that judges them (versions from metadata)."""
    from ..doctor._stack import package_version

    stack = [f"{name}={package_version(name)}" for name in STACK]
    text = json.dumps([CHECK_SCHEMA, stack, items], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _accepted_path() -> Path:
    from ..doctor._cache import cache_dir

    return cache_dir() / ACCEPTED_FILE


def _accepted() -> list[str]:
    try:
        keys = json.loads(_accepted_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


def _remember(key: str) -> None:
    """Atomic, and never fatal: a read-only cache only costs a check next time (said once)."""
    keys = [k for k in _accepted() if k != key][-(ACCEPTED_KEPT - 1) :] + [key]
    path = _accepted_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(keys), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as error:
        from ..doctor._cache import say_unwritable

        say_unwritable(error)


_NO_ANSWER = object()


def _ask_checker(items: list[tuple[dict[str, Any], int]]) -> object:
    """The checker's verdict (None: accepted, str: refusal), or _NO_ANSWER when there is none to ask."""
    global _checker
    proc, _checker = _checker, None
    if proc is None:
        return _NO_ANSWER
    try:  # now the search waits on it: back to our priority where the system allows it
        os.setpriority(os.PRIO_PROCESS, proc.pid, os.getpriority(os.PRIO_PROCESS, 0))
    except OSError:
        pass
    try:
        out, _ = proc.communicate(json.dumps(items), timeout=ANSWER_TIMEOUT_S)
        reply = json.loads(out)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        proc.kill()
        proc.communicate()
        return _NO_ANSWER
    if proc.returncode != 0 or not isinstance(reply, dict) or "error" not in reply:
        return _NO_ANSWER
    return reply["error"]


def _serve() -> int:
    """The checker: import DeepSpeed's config class now, then check what arrives on stdin (nothing: exit)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; a Ctrl-C there ends us by EOF or kill
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # DeepSpeed prints notices on stdout; the answer keeps its own descriptor
    quiet_deepspeed()
    import deepspeed.runtime.config  # noqa: F401 - the import this process exists to pay early

    text = sys.stdin.read()
    if not text.strip():
        return 0
    try:
        for config, world_size in json.loads(text):
            validate_config(config, world_size)
    except ConfigRejected as error:
        answer.write(json.dumps({"error": str(error)}))
    else:
        answer.write(json.dumps({"error": None}))
    answer.close()
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
