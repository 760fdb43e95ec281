"""What the same simulated search gives on this machine's stack, when the target stack differs where it matters.

A user who plans on a laptop for a cluster should see both answers side by side: the target's (pinned in the
export's requirements.txt) and, when this machine's HE verdict or DeepSpeed differs, what the best plan would
be here. The second search scores the same grid on `local` into a throw-away study.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from ..catalog import Stack
from ._planner import PreparedSearch, SearchOptions, plan_search


def _matters(target: Stack, local: Stack, family: str) -> bool:
    """The two stacks differ in what changes a pick: the family's HE verdict, or DeepSpeed's version."""
    return target.he_verdict(family) != local.he_verdict(family) or target.version("deepspeed") != local.version(
        "deepspeed"
    )


def _ratio(result: Any) -> str:
    """'1.18x the shipped script', or why no ratio is stated (the same verdict the search prints)."""
    verdict = result.verdict
    if verdict.kind == "no pick":
        return "nothing: no plan fits"
    if verdict.speedup is None:
        base = result.picks.headline.baseline
        status = base.status.value if base is not None else "missing"
        return f"not compared with the shipped script, which is {status} there"
    return f"{verdict.speedup.value:.2f}x the shipped script ({verdict.speedup.basis.value})"


def stack_comparison(options: SearchOptions, prepared: PreparedSearch, result: Any) -> str | None:
    """One line: the pick on the target stack, and the best plan on this machine's (None when they agree)."""
    from ..doctor import LOCAL, local_stack
    from ._study import run_search

    target = prepared.request.stack
    if not prepared.request.backend.scores_grid or target is None or target.name == LOCAL:
        return None
    local, family = local_stack(), prepared.setup.model.family
    if not _matters(target, local, family):
        return None
    with tempfile.TemporaryDirectory(prefix="dstune-local-") as tmp:
        here = plan_search(dataclasses.replace(options, stack=LOCAL, out=Path(tmp), storage=None, study_name=None))
        other = run_search(here.request)
    verdict = local.he_verdict(family) or "unknown"
    crash = " (its generation crashes)" if verdict == "broken" else ""
    broken_base = ", which itself cannot run there" if other.picks.baseline_issues else ""
    return (
        f"stacks: on {target.label}, pinned in requirements.txt, the pick is {_ratio(result)}; "
        f"on this machine's {local.label} {family}'s Hybrid Engine verdict is {verdict}{crash}, and the best plan "
        f"there is {_ratio(other)}{broken_base} (--stack local plans for it)"
    )
