"""Run one command as its own process group and end the whole group by its id."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TERM_GRACE_S = 10.0
"""Seconds between SIGTERM and SIGKILL when a trial is ended."""
REAP_WAIT_S = 10.0
"""Longest wait for init to reap the killed group's orphans (zombies keep the group id alive)."""


WATCHDOG = """
import os, signal, sys, time
pgid, parent = int(sys.argv[1]), int(sys.argv[2])
def end(*_):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
    os._exit(0)
signal.signal(signal.SIGTERM, end)
while os.getppid() == parent:
    time.sleep(0.5)
end()
"""
"""Ends a trial's process group when the process that started it dies (even by kill -9): it polls for a
new parent, so it needs no signal from the dead one (and no preexec_fn, unsafe beside threads)."""


def start_watchdog(pgid: int) -> subprocess.Popen:
    import sys

    return subprocess.Popen(
        [sys.executable, "-c", WATCHDOG, str(pgid), str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_watchdog(watchdog: subprocess.Popen) -> None:
    watchdog.kill()
    watchdog.wait()


@dataclass(frozen=True)
class Finished:
    returncode: int
    timed_out: bool
    pgid: int
    wall_s: float


def _wait(proc: subprocess.Popen, deadline: float, on_poll: Callable[[], None] | None) -> bool:
    """Wait for `proc` until `deadline` (time.time()), calling `on_poll` about once a second; True if it ran out."""
    while True:
        remaining = deadline - time.time()
        try:
            proc.wait(timeout=max(0.0, min(remaining, 1.0) if on_poll else remaining))
            return False
        except subprocess.TimeoutExpired:
            if on_poll is not None:
                on_poll()
            if time.time() >= deadline:
                return True


def run_group(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    timeout_s: float,
    launched_at: float,
    on_poll: Callable[[], None] | None = None,
) -> Finished:
    """Start `argv` (no shell) in a new session; on timeout or interrupt, end its whole group. `on_poll` runs
    about once a second while it waits (a progress display reading the trial's stage file)."""
    with open(log_path, "ab", buffering=0) as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(cwd),
            env=dict(env),
            start_new_session=True,
        )
        pgid = proc.pid
        watchdog = start_watchdog(pgid)
        try:
            timed_out = _wait(proc, launched_at + timeout_s, on_poll)
        except BaseException:
            end_group(proc, pgid)
            stop_watchdog(watchdog)
            raise
        end_group(proc, pgid)
        stop_watchdog(watchdog)
    return Finished(proc.returncode if not timed_out else -signal.SIGKILL, timed_out, pgid, time.time() - launched_at)


def _descendants(pid: int) -> list:
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:  # noqa: BLE001 - psutil missing or the process already gone
        return []


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def group_alive(pgid: int) -> bool:
    """Any process of the group still running (zombies awaiting their reaper do not count)."""
    try:
        import psutil
    except ImportError:
        return _signal_group(pgid, 0)
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.info["pid"]) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, PermissionError, OSError):
            continue
    return False


def end_group(proc: subprocess.Popen, pgid: int, grace_s: float = TERM_GRACE_S) -> None:
    """SIGTERM the group, SIGKILL what is left after `grace_s`, and reap the leader.

    Descendants that moved to a session of their own are remembered first and
    killed by pid, so nothing the trial started survives it.
    """
    strays = _descendants(proc.pid)
    if proc.poll() is None or group_alive(pgid):
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.time() + grace_s
        while time.time() < deadline and (proc.poll() is None or group_alive(pgid)):
            time.sleep(0.1)
    _signal_group(pgid, signal.SIGKILL)
    for child in strays:
        try:
            child.kill()
        except Exception:  # noqa: BLE001 - already gone
            pass
    proc.wait()
    # Orphaned members are reparented to init, which reaps them soon after; wait (bounded) until
    # the group id is gone entirely, so a caller's `os.killpg(pgid, 0)` finds nothing.
    deadline = time.time() + REAP_WAIT_S
    while time.time() < deadline and _signal_group(pgid, 0):
        time.sleep(0.05)
