"""Ctrl-C during a search: never swallowed, never a half-written export that looks finished."""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class CtrlC:
    """Remembers a SIGINT even where Python swallows the KeyboardInterrupt (a weakref callback)."""

    def __init__(self) -> None:
        self.seen = False
        self._defer = False

    def _handler(self, signum: int, frame: Any) -> None:
        self.seen = True
        if not self._defer:
            raise KeyboardInterrupt

    @contextmanager
    def watching(self) -> Iterator[CtrlC]:
        """Raise on Ctrl-C as usual, but silence the 'Exception ignored' report of a swallowed one."""
        previous_handler = signal.signal(signal.SIGINT, self._handler)
        previous_hook = sys.unraisablehook

        def hook(unraisable: Any) -> None:
            if not issubclass(unraisable.exc_type, KeyboardInterrupt):
                previous_hook(unraisable)

        sys.unraisablehook = hook
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous_handler)
            sys.unraisablehook = previous_hook

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Finish the block (writing files) first; `seen` tells the caller a Ctrl-C came meanwhile."""
        self._defer = True
        try:
            yield
        finally:
            self._defer = False


def mark_partial(out: Path, reason: str) -> None:
    """Set plan.json's `partial` field, replacing the file atomically."""
    path = out / "plan.json"
    payload = json.loads(path.read_text())
    payload["partial"] = {"interrupted": True, "reason": reason}
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".plan.", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, path)
