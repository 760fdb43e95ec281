"""One clock for the whole device command: every stage's timeout is what is left of it."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Deadline:
    """`limit_s` seconds from `started` (epoch seconds, the shell's start, so the wheel install counts),
    less `reserve_s` kept back for the last snapshot."""

    started: float
    limit_s: float
    reserve_s: float = 15.0

    def left(self, now: float | None = None) -> float:
        """Seconds a stage may still use."""
        now = time.time() if now is None else now
        return self.limit_s - self.reserve_s - (now - self.started)

    def budget(self, cap_s: float, now: float | None = None) -> float:
        """A stage's timeout: its own cap, or what is left, whichever is less (never negative)."""
        return max(0.0, min(cap_s, self.left(now)))

    def fits(self, need_s: float, now: float | None = None) -> bool:
        """Whether a stage that needs at least `need_s` seconds to say anything useful may start."""
        return self.left(now) >= need_s
