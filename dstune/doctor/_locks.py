"""torch's extension-build locks: which are held by a live builder, which are stale, and clearing the stale.

torch's FileBaton creates `<extensions dir>/<op>/lock` with O_CREAT|O_EXCL and keeps that descriptor
open until it releases (closes, then removes) the file; a waiter spins while the file exists. So a
builder that died (kill -9, a killed job) leaves a lock that every later load of that op waits on
forever. The rule here: a lock is stale when no process of the lock file's owner holds it open
(/proc/<pid>/fd). Those processes' descriptor tables are readable by that owner, so the check is a
proof on this host; if one of them cannot be read, the lock is "unknown" and is left alone.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass
from typing import Literal

LockState = Literal["held", "stale", "unknown"]


@dataclass(frozen=True, kw_only=True)
class ExtensionLock:
    path: str
    state: LockState
    age_s: float
    holders: tuple[int, ...] = ()
    """Pids that hold the lock file open (state "held")."""


def extensions_root() -> str:
    """TORCH_EXTENSIONS_DIR, else torch's default cache (without importing torch)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(cache, "torch_extensions")


def lock_paths(root: str | None = None) -> list[str]:
    """`<root>/<op>/lock` (TORCH_EXTENSIONS_DIR layout) and `<root>/<py/torch tag>/<op>/lock` (default)."""
    base = root or extensions_root()
    found = glob.glob(os.path.join(base, "*", "lock")) + glob.glob(os.path.join(base, "*", "*", "lock"))
    return sorted(p for p in found if os.path.isfile(p))


def _holders(path: str, owner: int) -> tuple[tuple[int, ...], bool]:
    """(pids holding `path` open, whether every process of `owner` could be read)."""
    target = os.path.realpath(path)
    holders, complete = [], True
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fd_dir = f"/proc/{entry}/fd"
        try:
            if os.stat(f"/proc/{entry}").st_uid != owner and owner != 0:
                continue
            fds = os.listdir(fd_dir)
        except FileNotFoundError:
            continue
        except PermissionError:
            complete = False
            continue
        for fd in fds:
            try:
                if os.readlink(os.path.join(fd_dir, fd)) == target:
                    holders.append(int(entry))
                    break
            except OSError:
                continue
    return tuple(holders), complete


def inspect_lock(path: str) -> ExtensionLock:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return ExtensionLock(path=path, state="held", age_s=0.0)
    holders, complete = _holders(path, info.st_uid)
    state: LockState = "held" if holders else ("stale" if complete else "unknown")
    return ExtensionLock(path=path, state=state, age_s=max(0.0, time.time() - info.st_mtime), holders=holders)


def find_locks(root: str | None = None) -> list[ExtensionLock]:
    return [inspect_lock(p) for p in lock_paths(root)]


def clear_stale_locks(root: str | None = None) -> tuple[list[str], list[ExtensionLock]]:
    """Remove the stale locks; return (removed paths, locks that could not be proven stale)."""
    removed, unproven = [], []
    for lock in find_locks(root):
        if lock.state == "stale":
            try:
                os.remove(lock.path)
            except FileNotFoundError:
                pass
            removed.append(lock.path)
        elif lock.state == "unknown":
            unproven.append(lock)
    return removed, unproven
