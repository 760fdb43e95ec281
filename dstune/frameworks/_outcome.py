"""What a search's trials came to, in one line, when none of them finished."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..record import Status

FAILED = (Status.OOM, Status.TIMEOUT, Status.ERROR, Status.CRASHED)


def failure_summary(rows: list[Any]) -> str | None:
    """None when some trial finished or none failed; else how many failed, how, and the first error."""
    if any(r.status == Status.OK for r in rows):
        return None
    failed = sorted((r for r in rows if r.status in FAILED), key=lambda r: r.number)
    if not failed:
        return None
    counts = Counter(r.status.value for r in failed)
    first = failed[0]
    how = ", ".join(f"{n} {status}" for status, n in counts.most_common())
    reason = " ".join(str(first.reason or first.status.value).split())
    return f"no trial finished: {len(failed)} trial(s) failed ({how}); first: trial {first.number}: {reason[:300]}"
