"""Choosing the production plan: per training job, fastest under the cap, ties broken toward fewer known
issues, then headroom.

A speedup is only stated between plans of one job (dstune.plan.Job): the headline
compares the pick for the baseline's job with the baseline; with `--explore` each
other class of job (what is trained x whether the batch is the baseline's) gets its
own pick, compared with the baseline's settings running that same job where the
study has them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..plan import Job, job_of
from ..record import Basis, Status, TrialRow, interval_from_log

TIE_TOLERANCE = 0.01
"""Plans within 1% of the fastest are treated as equally fast (predictions share the model's structure;
measurements have run-to-run noise), so the pick goes to the one with more memory headroom."""


def memory_of(row: TrialRow) -> float | None:
    return row.memory()


def fits(row: TrialRow, cap_bytes: float) -> bool:
    return row.status == Status.OK and row.figures is not None and (row.memory() or 0.0) <= cap_bytes


def changes(values: Mapping[str, Any], reference: Mapping[str, Any] | None) -> list[str]:
    """Knobs whose value differs from the reference plan (in field order)."""
    if reference is None:
        return []
    return [k for k in values if values.get(k) != reference.get(k)]


Risks = Callable[[Mapping[str, Any]], int]
"""How many known issues (broken or risky) a plan's knob values hit on the target stack."""


def rank(
    rows: Sequence[TrialRow],
    cap_bytes: float,
    *,
    baseline: Mapping[str, Any] | None = None,
    tolerance: float = TIE_TOLERANCE,
    risks: Risks | None = None,
) -> list[TrialRow]:
    """Distinct ok plans under the cap, best first: throughput in tiers of `tolerance`; within the
    top tier fewer known-issue hits (`risks`), then less peak memory, then fewer changes from the
    baseline, first: a tie never goes to a plan flagged risky when an equal one is not. When the
    baseline itself is in the top tier and hits no known issue, a plan slower than it leaves the tier:
    less memory never buys a pick that is slower than the script it is meant to beat (opt-66b on 64
    GPUs picked a 0.99x plan for its 9 GiB less peak). Repeats are left out."""
    seen: set[str] = set()
    fit = []
    for row in sorted(rows, key=lambda r: r.number):
        key = repr(sorted(row.values.items()))
        if row.source in ("repeat", "confirm") or key in seen or not fits(row, cap_bytes):
            continue
        seen.add(key)
        fit.append(row)
    if not fit:
        return []
    best = max(r.samples_per_s or 0.0 for r in fit)
    top = [r for r in fit if (r.samples_per_s or 0.0) >= best * (1.0 - tolerance)]
    rest = [r for r in fit if r not in top]
    hits = (lambda r: risks(r.values)) if risks is not None else (lambda r: 0)
    base = next((r for r in top if baseline is not None and not changes(r.values, baseline)), None)
    if base is not None and not hits(base):
        floor = base.samples_per_s or 0.0
        top, slower = (
            [r for r in top if (r.samples_per_s or 0.0) >= floor],
            [r for r in top if (r.samples_per_s or 0.0) < floor],
        )
        rest = slower + rest
    top.sort(key=lambda r: (hits(r), r.memory() or 0.0, len(changes(r.values, baseline)), r.number))
    rest.sort(key=lambda r: (-(r.samples_per_s or 0.0), r.memory() or 0.0, r.number))
    return top + rest


@dataclass(frozen=True)
class Speedup:
    """How much faster the pick is than a baseline of the same job; `basis` measured only when both are."""

    value: float
    interval: tuple[float, float] | None
    basis: Basis
    backing: str | None = None
    """Where the interval comes from, e.g. '90% interval from 56 published pairs'."""

    @property
    def tie(self) -> bool:
        """The interval includes 1: the pick cannot be told from the baseline."""
        return self.interval is not None and self.interval[0] <= 1.0 <= self.interval[1]

    def text(self) -> str:
        if self.interval is None:
            return f"{self.value:.2f}x" + (f" ({self.backing})" if self.backing else "")
        span = f"{self.interval[0]:.2f}-{self.interval[1]:.2f}x" + (f", {self.backing}" if self.backing else "")
        if self.tie:
            return f"{_no_difference(self.basis)}{_direction(self.value)} ({self.value:.2f}x {self.basis}, {span})"
        return f"{self.value:.2f}x ({span})"

    def versus(self, reference: str, subject: str = "the pick") -> str:
        """The pick against `reference` as one English clause, whatever the value and interval."""
        detail = [self.basis.value]
        if self.interval is not None:
            detail.append(
                f"{self.interval[0]:.2f}-{self.interval[1]:.2f}x" + (f", {self.backing}" if self.backing else "")
            )
        elif self.backing:
            detail.append(self.backing)
        return compared(self.value, self.interval, reference, ", ".join(detail), subject, basis=self.basis)

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "interval": list(self.interval) if self.interval else None,
            "basis": self.basis.value,
            "tie": self.tie,
            "backing": self.backing,
        }


def compared(
    value: float,
    interval: tuple[float, float] | None,
    reference: str,
    detail: str,
    subject: str = "the pick",
    basis: Basis | str = Basis.PREDICTED,
) -> str:
    """'the pick shows no clear difference from R, though it is slower (0.71x predicted, ...)' when the interval
    includes 1 ('no measurable difference' when measured), else 'the pick runs 1.52x faster than R (...)', 'as
    fast as R' or 'slower than R (0.80x its throughput, ...)': a ratio under 1 is never called faster, and a
    tie still says its number and direction."""
    if interval is not None and interval[0] <= 1.0 <= interval[1]:
        return f"{subject} shows {_no_difference(basis)} from {reference}{_direction(value)} ({value:.2f}x {detail})"
    if f"{value:.2f}" == "1.00":
        return f"{subject} runs as fast as {reference} ({value:.2f}x {detail})"
    if value > 1.0:
        return f"{subject} runs {value:.2f}x faster than {reference} ({detail})"
    return f"{subject} runs slower than {reference} ({value:.2f}x its throughput, {detail})"


def _no_difference(basis: Basis | str) -> str:
    return "no measurable difference" if Basis(basis) == Basis.MEASURED else "no clear difference"


def _direction(value: float) -> str:
    """', though it is slower' / ', though it is faster' ('' at 1.00x): a tie keeps its direction."""
    if f"{value:.2f}" == "1.00":
        return ""
    return f", though it is {'slower' if value < 1.0 else 'faster'}"


def speedup(pick: TrialRow | None, base: TrialRow | None, step: str, rows: Sequence[TrialRow] = ()) -> Speedup | None:
    """pick / baseline on a common basis: both measured, else both predicted. A measured ratio's interval
    comes from the spread of real runs (the baseline and pick re-measured in pairs among `rows`, else
    their steps: dstune.search._measured). A predicted ratio's interval comes from ratio evidence
    (published pairs of plans one source measured on one cluster, each left out of the fit); without it,
    from the pick's own interval width, errors taken as fully correlated."""
    if pick is None or base is None or base.status != Status.OK:
        return None
    if pick.measured is not None and base.measured is not None:
        from ._measured import measured_ratio

        ratio = pick.measured.samples_per_s / base.measured.samples_per_s
        if pick.values == base.values:
            return Speedup(ratio, None, Basis.MEASURED)
        found = measured_ratio(pick, base, rows)
        if found is None:
            return Speedup(ratio, None, Basis.MEASURED, "no interval: a run without per-step spread")
        return Speedup(found.value, found.interval, Basis.MEASURED, found.backing)
    if pick.predicted is None or base.predicted is None:
        return None
    ratio = pick.predicted.samples_per_s / base.predicted.samples_per_s
    changed = uncalibrated_changes(step, pick.values, base.values)
    if changed:
        from ..calibration._pairs import covered_changes

        # a knob another step's pairs change (DPO's zero_stage is SFT's) is uncovered only for this step
        elsewhere = any(k in covered_changes(other) for other in STEPS for k in changed)
        what = f"published {step.upper()} pair" if elsewhere else "published pair"
        return Speedup(ratio, None, Basis.PREDICTED, f"uncalibrated: no {what} changes " + ", ".join(changed))
    from ..calibration._pairs import shipped_kind_interval

    evidence = shipped_kind_interval("plan")  # a pick and its baseline: one model's plan on one cluster
    if evidence is not None and math.isfinite(evidence.factor):
        f = evidence.factor
        return Speedup(ratio, (ratio / f, ratio * f), Basis.PREDICTED, evidence.backing())
    interval = pick.predicted.samples_per_s_interval
    if interval is None:
        return Speedup(ratio, None, Basis.PREDICTED)
    sd = math.log(interval[1] / interval[0]) / (2 * 1.645)
    return Speedup(ratio, interval_from_log(math.log(ratio), sd), Basis.PREDICTED)


STEPS = ("sft", "rm", "dpo", "ppo")


def uncalibrated_changes(step: str, pick: Mapping[str, Any], base: Mapping[str, Any]) -> list[str]:
    """Knobs in which the pick differs from its baseline that no published pair of the step's evidence changes
    with the model held fixed (`calibration._pairs.covered_changes`): for PPO every one (no published PPO pair
    holds the job fixed while changing the Hybrid Engine, ZeRO, LoRA, offload or a batch), for SFT and RM all but
    the ZeRO stage and the micro-batch."""
    from ..calibration._pairs import covered_changes

    covered = covered_changes(step)
    return sorted(k for k in pick if k in base and pick[k] != base[k] and k not in covered)


def job_class(job: Job, baseline_job: Job) -> str:
    """'full fine-tuning, baseline batch' / 'LoRA only, 64 prompts/iteration' ...: one pick per class."""
    trains = {"full": "full fine-tuning", "lora-only": "LoRA only", "lora+base": "LoRA + base weights"}[
        job.trains_class()
    ]
    batch = "baseline batch" if job.batches == baseline_job.batches else "other batch"
    return f"{trains}, {batch}"


def class_of(step: str, values: Mapping[str, Any], world: int, baseline_values: Mapping[str, Any]) -> str:
    job, base = job_of(step, values, world), job_of(step, baseline_values, world)
    return "baseline job" if job == base else job_class(job, base)


def grid_classes(
    step: str, cols: Mapping[str, Any], world: int, baseline_values: Mapping[str, Any]
) -> tuple[Any, list[str]]:
    """Job class of every candidate (int codes into the returned labels), one job_of call per distinct job."""
    import numpy as np

    from ..plan import job_codes

    ids, first = job_codes(step, cols, world)
    names = [
        class_of(
            step,
            {k: v[int(i)].item() if hasattr(v[int(i)], "item") else v[int(i)] for k, v in cols.items()},
            world,
            baseline_values,
        )
        for i in first
    ]
    labels = sorted(set(names))
    return np.array([labels.index(n) for n in names], dtype=np.int64)[ids], labels


@dataclass
class JobPick:
    """The pick for one class of job and how it compares with the baseline of its own job."""

    job_class: str
    job: Job
    ranked: list[TrialRow]
    baseline: TrialRow | None
    speedup: Speedup | None = None
    same_job_as_baseline: bool = False

    @property
    def pick(self) -> TrialRow | None:
        return self.ranked[0] if self.ranked else None

    @property
    def runners_up(self) -> list[TrialRow]:
        """Plans after the pick whose figures differ from the pick's and from each other's (one plan per
        outcome), never the baseline itself."""
        base = self.baseline.values if self.baseline else None
        kept: list[TrialRow] = []
        for row in self.ranked[1:]:
            if row.values != base and not any(_same_figures(row, k) for k in [self.pick, *kept]):
                kept.append(row)
        return kept

    @property
    def equivalents(self) -> list[TrialRow]:
        """Other plans whose figures equal the pick's (they differ only in knobs the figures do not see)."""
        return [r for r in self.ranked[1:] if _same_figures(r, self.pick)]


def _same_figures(a: TrialRow, b: TrialRow | None, rel: float = 1e-4) -> bool:
    if b is None or a.samples_per_s is None or b.samples_per_s is None:
        return False
    close = lambda x, y: abs(x - y) <= rel * max(abs(x), abs(y), 1e-30)  # noqa: E731
    return close(a.samples_per_s, b.samples_per_s) and close(a.memory() or 0.0, b.memory() or 0.0)


@dataclass(frozen=True)
class BaselineIssue:
    """A known issue of severity broken that the baseline itself hits on this stack: the baseline is
    still what the speedup is measured against (it is what users run), but it is never the pick."""

    id: str
    consequence: str
    sources: tuple[str, ...] = ()
    rule: bool = False
    """A hard rule of the installed DeepSpeed (not a known issue): --known-issues mark does not make it pickable."""

    def text(self) -> str:
        return f"{self.id}: {self.consequence}"

    def to_json(self) -> dict[str, Any]:
        kind = {"kind": "rule"} if self.rule else {}
        return {
            "id": self.id,
            "severity": "broken",
            **kind,
            "consequence": self.consequence,
            "sources": list(self.sources),
        }


@dataclass
class Picks:
    baseline_job: Job
    headline: JobPick
    alternatives: list[JobPick] = field(default_factory=list)
    baseline_issues: tuple[BaselineIssue, ...] = ()
    """Broken known issues the shipped baseline hits; empty when it runs as shipped."""

    @property
    def baseline_broken(self) -> bool:
        return bool(self.baseline_issues)


def choose(
    rows: Sequence[TrialRow],
    baseline: TrialRow | None,
    baseline_values: Mapping[str, Any],
    step: str,
    world: int,
    cap_bytes: float,
    tolerance: float = TIE_TOLERANCE,
    baseline_issues: Sequence[BaselineIssue] = (),
    keep_broken: bool = False,
    risks: Risks | None = None,
) -> Picks:
    """The headline pick (the baseline's job) and one pick per other job class. A baseline that hits a
    broken known issue (`baseline_issues`) is compared against but never picked: exporting it would ship
    a combination known to fail, unless `keep_broken` (--known-issues mark) keeps broken plans on purpose."""
    base_job = job_of(step, baseline_values, world)
    by_class: dict[str, list[TrialRow]] = {}
    jobs: dict[str, Job] = {}
    for row in rows:
        if row.source in ("baseline", "job-baseline", "repeat", "confirm") or row.status != Status.OK:
            continue
        job = job_of(step, row.values, world)
        cls = "baseline job" if job == base_job else job_class(job, base_job)
        by_class.setdefault(cls, []).append(row)
        jobs.setdefault(cls, job)
    same = by_class.pop("baseline job", [])
    if baseline_issues and (not keep_broken or any(i.rule for i in baseline_issues)):
        same = [r for r in same if changes(r.values, baseline_values)]
    elif baseline:
        same.append(baseline)
    ranked = rank(same, cap_bytes, baseline=baseline_values, tolerance=tolerance, risks=risks)
    headline = JobPick("baseline job", base_job, ranked, baseline, same_job_as_baseline=True)
    headline.speedup = speedup(headline.pick, baseline, step, rows)
    alternatives = []
    for cls in sorted(by_class):
        ranked = rank(by_class[cls], cap_bytes, baseline=baseline_values, tolerance=tolerance, risks=risks)
        if not ranked:
            continue
        job = job_of(step, ranked[0].values, world)
        own = _own_baseline(rows, job, step, world)
        alternatives.append(JobPick(cls, job, ranked, own, speedup(ranked[0], own, step, rows)))
    return Picks(base_job, headline, alternatives, tuple(baseline_issues))


def _own_baseline(rows: Sequence[TrialRow], job: Job, step: str, world: int) -> TrialRow | None:
    """The baseline's system settings running `job`, where the study recorded it."""
    for row in rows:
        if row.source == "job-baseline" and job_of(step, row.values, world) == job:
            return row
    return None
