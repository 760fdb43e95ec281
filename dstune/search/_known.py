"""Known issues and stack rules as the search applies them: the plans it drops, the ties it breaks,
and the notes that say what the baseline and the picks hit on the target stack (dstune.doctor's lists)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..plan import Baseline
from ._grid import Grid
from ._pick import BaselineIssue, Picks


def without_broken(grid: Grid, model: Any, stack: Any, notes: list[str]) -> Grid:
    """The grid less the plans that hit a known-broken combination on the stack (--known-issues exclude)."""
    from ..doctor import known_issue_mask, known_issue_masks, known_issues

    hit = known_issue_mask(grid.columns, model, stack)
    broken = {i.id for i in known_issues() if i.severity == "broken"}
    ids = sorted(set(known_issue_masks(grid.columns, model, stack)) & broken)
    where = f"stack {stack.name}"
    grid = grid.without(hit, "known issues", f"a known-broken combination on {where} (dstune doctor)")
    if hit.any():
        notes.append(
            f"excluded {int(hit.sum()):,} plan(s) that hit a known-broken combination on {where} "
            f"({', '.join(ids)}; --known-issues mark keeps them)"
        )
    return grid


def baseline_notes(picks: Picks, stack: Any, known_issues: str) -> list[str]:
    """One line per rule or broken known issue the shipped baseline hits: why it is (or is not) never the pick."""
    on = f"stack {stack.label}" if stack is not None else "this stack"
    return [
        (
            f"the baseline as shipped cannot run on {on} (rule {i.id}): {i.consequence}; it is never the pick"
            if i.rule
            else f"the baseline as shipped hits known issue {i.id} (broken on {on}): {i.consequence}; "
            + ("--known-issues mark keeps broken plans pickable" if known_issues == "mark" else "it is never the pick")
        )
        + f", and the speedup is against it as shipped [{', '.join(i.sources)}]"
        for i in picks.baseline_issues
    ]


def rule_issues(baseline: Baseline) -> tuple[BaselineIssue, ...]:
    """The installed DeepSpeed's hard limits the shipped baseline breaks (e.g. HE tensor parallelism)."""
    return tuple(BaselineIssue(b.rule, b.message, b.sources, rule=True) for b in baseline.cannot_run)


def baseline_issues(values: Mapping[str, Any], model: Any, stack: Any) -> tuple[BaselineIssue, ...]:
    """Known issues of severity broken that the shipped baseline hits on this stack (none when unchecked)."""
    if stack is None:
        return ()
    from ..doctor import match_known_issues

    return tuple(
        BaselineIssue(i.id, i.consequence, tuple(i.sources))
        for i in match_known_issues(values, model, stack)
        if i.severity == "broken"
    )


def risks(model: Any, stack: Any) -> Callable[[Mapping[str, Any]], int] | None:
    """Known issues (any severity) a plan hits on the target stack, for breaking ties (None: unchecked)."""
    if stack is None:
        return None
    from ..doctor import match_known_issues

    return lambda values: len(match_known_issues(values, model, stack))


def issue_notes(picks: Picks, model: Any, stack: Any) -> list[str]:
    """One line per known issue that a pick (the headline's or an alternative's) hits on this stack."""
    from ..doctor import match_known_issues

    notes = []
    for label, pick in [("pick", picks.headline.pick)] + [(f"{a.job_class} pick", a.pick) for a in picks.alternatives]:
        if pick is None:
            continue
        for issue in match_known_issues(pick.values, model, stack):
            notes.append(
                f"known issue ({issue.severity}) hit by the {label}: {issue.id}: {issue.consequence} "
                f"[{', '.join(issue.sources)}]"
            )
    return notes
