"""torch's extension-build locks: which are held by a live builder, which are stale, and clearing the stale.

torch's FileBaton creates `<extensions dir>/<op>/lock` with O_CREAT|O_EXCL and keeps that descriptor
open until it releases (closes, then removes) the file; a waiter spins while the file exists. So a
builder that died (kill -9, a killed job) leaves a lock that every later load of that op waits on
forever. The rule here: a lock is stale when no process of the lock file's owner holds it open
(/proc/<pid>/fd). Those processes' descriptor tables are readable by that owner, so the check is a
proof on this host; if one of them cannot be read, the lock is "unknown" and is left alone.

FileBaton.release closes the descriptor before it removes the file, so a live builder's lock has no
holder for an instant; clearing it then makes the builder's own remove fail. A lock is therefore only
stale when, after SETTLE_S, the same file (device, inode, times) is still there and still unheld.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass
from typing import Literal

LockState = Literal["held", "stale", "unknown", "gone"]

SETTLE_S = 0.5
"""Pause between two looks at an unheld lock: far longer than FileBaton's close-then-remove."""


@dataclass(frozen=True, kw_only=True)
class ExtensionLock:
    path: str
    state: LockState
    age_s: float
    holders: tuple[int, ...] = ()
    """Pids that hold the lock file open (state "held")."""
    identity: tuple[int, int, int, int] | None = None
    """Device, inode, mtime and ctime of the file judged stale: what may be removed."""


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


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return info.st_dev, info.st_ino, info.st_mtime_ns, info.st_ctime_ns


def _look(path: str) -> tuple[os.stat_result | None, tuple[int, ...], bool]:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None, (), True
    return info, *_holders(path, info.st_uid)


def inspect_lock(path: str, *, settle_s: float = SETTLE_S, rounds: int = 3) -> ExtensionLock:
    """The lock's state: held, unknown, gone (released while looked at), or stale: the same file, unheld,
    twice `settle_s` apart. A lock replaced in between (another builder's) is judged again, `rounds` times."""
    info, holders, complete = _look(path)
    for _ in range(rounds):
        if info is None:
            return ExtensionLock(path=path, state="gone", age_s=0.0)
        age = max(0.0, time.time() - info.st_mtime)
        if holders or not complete:
            return ExtensionLock(path=path, state="held" if holders else "unknown", age_s=age, holders=holders)
        time.sleep(settle_s)
        again, holders, complete = _look(path)
        if again is not None and _identity(again) == _identity(info) and not holders and complete:
            return ExtensionLock(path=path, state="stale", age_s=age, identity=_identity(info))
        info = again
    return ExtensionLock(path=path, state="unknown", age_s=0.0)


def find_locks(root: str | None = None, *, settle_s: float = SETTLE_S) -> list[ExtensionLock]:
    """Locks under `root` that are still there (one released while looked at is left out)."""
    locks = (inspect_lock(p, settle_s=settle_s) for p in lock_paths(root))
    return [lock for lock in locks if lock.state != "gone"]


def clear_stale_locks(root: str | None = None, *, settle_s: float = SETTLE_S) -> tuple[list[str], list[ExtensionLock]]:
    """Remove the stale locks; return (removed paths, locks that could not be proven stale). A stale lock
    that is no longer the file judged, or already gone, is not touched."""
    removed, unproven = [], []
    for lock in find_locks(root, settle_s=settle_s):
        if lock.state == "stale":
            try:
                if _identity(os.stat(lock.path)) != lock.identity:
                    continue
                os.remove(lock.path)
            except FileNotFoundError:
                continue
            removed.append(lock.path)
        elif lock.state == "unknown":
            unproven.append(lock)
    return removed, unproven
