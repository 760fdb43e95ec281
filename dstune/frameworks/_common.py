"""What every command's output shares: JSON on the real stdout while libraries print elsewhere, and sizes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

_json_out: IO[str] | None = None


@contextmanager
def json_stdout() -> Iterator[None]:
    """Under --json stdout carries the JSON only: libraries print there (DeepSpeed's "Setting accelerator
    to CPU", from Python loggers and from child processes alike), so stdout points at stderr while the
    command runs and `print_json` writes to the saved stdout (file descriptor 1 too, when it is the real one)."""
    global _json_out
    previous = sys.stdout
    previous.flush()
    saved = os.dup(1) if _is_fd1(previous) else None
    if saved is not None:
        os.dup2(2, 1)
    sys.stdout = sys.stderr
    _json_out = os.fdopen(saved, "w") if saved is not None else previous
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stdout = previous
        _json_out.flush()
        if saved is not None:
            os.dup2(saved, 1)
            _json_out.close()
        _json_out = None


def _is_fd1(stream: IO[str]) -> bool:
    try:
        return stream.fileno() == 1
    except (AttributeError, OSError, ValueError):
        return False


def print_json(payload: Any) -> None:
    out = _json_out or sys.stdout
    json.dump(payload, out, indent=2, default=str)
    out.write("\n")
    out.flush()


def gib(value: float) -> str:
    return f"{value / 2**30:,.2f} GiB"
