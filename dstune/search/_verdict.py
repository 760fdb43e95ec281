"""The search's answer as one record, rendered once into one line.

The terminal, plan.json (`verdict`), the report and the launch script's header all print this line, so they
cannot disagree: a baseline that did not run (infeasible, OOM, failed) gives no speedup anywhere, and a
baseline broken on the target stack is said to be broken on that stack, by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..record import Status
from ._pick import Picks, Speedup

VerdictKind = Literal["speedup", "baseline", "incomparable", "no pick"]


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    """speedup: pick vs baseline stated; baseline: the pick is the shipped script; incomparable: no common
    basis or the baseline did not run, so no speedup is stated; no pick: nothing fits."""
    line: str
    speedup: Speedup | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "line": self.line, "speedup": self.speedup.to_json() if self.speedup else None}


def _broken(picks: Picks, stack: str) -> str:
    """', which is broken on stack S (ids)' for a shipped script that hits a broken issue or rule there."""
    if not picks.baseline_broken:
        return ""
    ids = ", ".join(i.id for i in picks.baseline_issues)
    base = picks.headline.baseline
    ran_on_cpu = (
        base is not None
        and base.status == Status.OK
        and base.measured is not None
        and base.details.get("device") == "cpu"
    )
    if ran_on_cpu:
        return (
            f", which is broken on {stack} on GPUs ({ids}); its measured trial ran only because DeepSpeed's CPU "
            "accelerator injects no inference kernels"
        )
    return f", which is broken on {stack} ({ids})"


def verdict_of(picks: Picks, stack_label: str | None = None, pick_broken: tuple[str, ...] = ()) -> Verdict:
    """One line for the headline job: how the pick compares with DeepSpeed-Chat's script, or why it cannot.
    `pick_broken`: ids of broken known issues the pick itself hits (kept by --known-issues mark), said in
    the same line, since a speedup for a plan that crashes must not read as an answer."""
    verdict = _verdict(picks, stack_label)
    if not pick_broken or verdict.kind == "no pick":
        return verdict
    stack = f"stack {stack_label}" if stack_label else "the installed stack"
    warning = (
        f"; the pick itself is broken on {stack} ({', '.join(pick_broken)}): "
        "--known-issues mark kept it, it will not run there"
    )
    return Verdict(verdict.kind, verdict.line + warning, verdict.speedup)


def _verdict(picks: Picks, stack_label: str | None) -> Verdict:
    head = picks.headline
    pick, base = head.pick, head.baseline
    stack = f"stack {stack_label}" if stack_label else "the installed stack"
    if pick is None:
        return Verdict("no pick", "no plan of this job fits under the memory cap; no configs written")
    rate = pick.samples_per_s or 0.0
    basis = pick.figures.basis.value if pick.figures else "predicted"
    runs = f"the pick (trial {pick.number}) runs {rate:,.3g} samples/s ({basis})"
    if base is not None and base.status != Status.OK:
        why = f": {base.reason}" if base.reason else ""
        return Verdict(
            "incomparable",
            f"DeepSpeed-Chat's script for this job is {base.status.value} (trial {base.number}{why}), so no "
            f"speedup is stated; {runs}",
        )
    if head.speedup is None:
        missing = "no baseline trial" if base is None else "no baseline figures on the pick's basis"
        return Verdict("incomparable", f"{runs}; the study has {missing} to compare it with")
    broken = _broken(picks, stack)
    if base is not None and pick.values == base.values:
        line = f"the pick is DeepSpeed-Chat's script itself{broken}: no plan beats it for this job"
        return Verdict("baseline", line, head.speedup)
    reference = "DeepSpeed-Chat's script as shipped" if broken else "DeepSpeed-Chat's script for the same job"
    return Verdict("speedup", head.speedup.versus(reference) + broken, head.speedup)
