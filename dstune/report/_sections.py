"""The report's text parts (facts, headline, changed knobs, accuracy), shared by HTML, Markdown and terminal."""

from __future__ import annotations

import math

from ..record import Status
from ._answer import where
from ._importance import Importance
from ._records import Accuracy, Header, Headline
from ._table import Column, Kind, Table, format_value
from ._values import show

GIB = 2**30
FIGURES_LEFT_OUT = (
    "Figures not drawn: `dstune search` writes this report without them to stay fast. Run `dstune report "
    "{study}` to add them (throughput against peak memory with the Pareto front and the memory cap, phase "
    "times, best so far, parameter importance, predicted against measured)."
)


def facts(h: Header) -> list[tuple[str, str]]:
    nodes = f" ({h.nodes} node{'s' if h.nodes != 1 else ''})" if h.nodes else ""
    rows = [
        ("model", h.model + (f" (critic/reward: {h.critic_model})" if h.critic_model else "")),
        ("RLHF step", h.step.upper()),
        ("GPUs", f"{h.gpus} x {h.gpu_type}{nodes}"),
        ("backend", h.backend + (" (cost-model predictions)" if h.backend == "simulate" else "")),
        ("trials", ", ".join(f"{n} {s}" for s, n in h.status_counts) or "none"),
    ]
    if h.devices:
        rows.append(("measured on", ", ".join(h.devices)))
    if h.study:
        rows.append(("Optuna study", h.study))
    if h.created:
        rows.append(("created", h.created))
    if h.versions:
        rows.append(("host versions", ", ".join(f"{k} {v}" for k, v in h.versions)))  # not the target stack
    return rows


def verdict(h: Headline) -> str:
    """The answer in one line: the search's own verdict (plan.json), else one built from the figures."""
    if h.pick is None:
        return "No plan finished within the memory cap yet, so there is no pick."
    if h.verdict:
        return h.verdict[:1].upper() + h.verdict[1:] + ("" if h.verdict.endswith(".") else ".")
    if h.speedup is None:
        if h.baseline_status not in (None, Status.OK):
            return (
                f"The DeepSpeed-Chat baseline did not finish here (status: {h.baseline_status}), so no speedup is "
                f"stated; the pick runs {h.pick.samples_per_s:,.3g} samples/s ({h.pick.basis})."
            )
        return (
            f"The pick runs {h.pick.samples_per_s:,.3g} samples/s ({h.pick.basis}); there is no baseline on the "
            "same basis to compare with."
        )
    from ..search._pick import compared

    assert h.baseline is not None  # a speedup is the pick over the baseline
    detail = [h.pick.basis]
    if h.speedup_interval:
        detail.append(f"90% interval {h.speedup_interval[0]:.2f}-{h.speedup_interval[1]:.2f}x")
    elif h.speedup_uncalibrated:
        detail.append(h.speedup_uncalibrated)
    detail.append(f"{h.pick.samples_per_s:,.3g} vs {h.baseline.samples_per_s:,.3g} samples/s")
    reference = "the baseline as shipped" if h.baseline_issues else "the baseline"
    line = compared(h.speedup, h.speedup_interval, reference, ", ".join(detail), basis=h.pick.basis)
    return line[:1].upper() + line[1:] + "."


def explanation(h: Headline) -> list[str]:
    """What the verdict rests on, in plain sentences: the job, the memory, the stack and its known issues."""
    lines = []
    if h.baseline_status not in (None, Status.OK):
        lines.append(f"The DeepSpeed-Chat baseline did not finish here (status: {h.baseline_status}).")
    if h.job:
        lines.append(f"Training job (the same for baseline and pick): {h.job}.")
    if h.stack:
        lines.append(f"Target stack: {h.stack}, pinned in requirements.txt.")
    if h.pick is not None and h.headroom_bytes is not None and h.memory_cap_bytes:
        share = h.headroom_bytes / h.memory_cap_bytes
        lines.append(
            f"The pick peaks at {h.pick.gpu_peak_bytes / GIB:.1f} GiB per GPU, {h.headroom_bytes / GIB:.1f} GiB "
            f"({share:.0%}) under the {h.memory_cap_bytes / GIB:.1f} GiB memory cap."
        )
    said = any(n.startswith("the baseline as shipped") for n in h.search_notes)  # the search's note says it
    if h.baseline_issues and not said:
        on = where(h.stack)
        lines.append(
            f"DeepSpeed-Chat's script as shipped is broken on {on}"
            + (" on GPUs" if h.baseline_ran_on_cpu else "")
            + " (known issue "
            + "; ".join(h.baseline_issues)
            + (
                "); its measured trial here ran on DeepSpeed's CPU accelerator, which injects no inference kernels."
                if h.baseline_ran_on_cpu
                else "), so it is never the pick; the speedup is against it as shipped."
            )
        )
    lines += [n[:1].upper() + n[1:] + ("" if n.endswith(".") else ".") for n in h.search_notes]
    return lines


def baseline_line(h: Headline) -> str:
    """Where the baseline's settings come from (the DeepSpeed-Chat script a user would otherwise copy)."""
    return f"Baseline: {h.baseline_source}." if h.baseline_source else "Baseline: DeepSpeed-Chat's shipped settings."


def headline_table(h: Headline) -> Table:
    """Baseline and pick figure by figure, pre-formatted (each row has its own unit)."""
    b, p = h.baseline, h.pick
    rows = []
    figures: tuple[tuple[str, str, Kind], ...] = (
        ("samples/s", "samples_per_s", "rate"),
        ("tokens/s", "tokens_per_s", "rate"),
        ("step time", "step_s", "seconds"),
        ("peak GPU memory", "gpu_peak_bytes", "gib"),
        ("MFU", "mfu", "percent"),
    )
    for name, attr, kind in figures:
        bv, pv = (getattr(b, attr) if b else math.nan), (getattr(p, attr) if p else math.nan)
        comparable = h.speedup is not None and bv and math.isfinite(bv) and math.isfinite(pv) and bv > 0
        change = f"{pv / bv:.2f}x" if comparable else "–"  # no ratio where the search states no speedup
        rows.append((name, format_value(bv, kind), format_value(pv, kind), change))
    if b and p:
        rows.append(("basis", b.basis, p.basis, ""))
    if h.baseline_status not in (None, Status.OK):
        rows.append(("baseline status", h.baseline_status, Status.OK.value if p else "–", ""))
    return Table((Column("figure"), Column("baseline"), Column("pick"), Column("pick / baseline")), tuple(rows))


def alternatives_table(h: Headline) -> Table:
    """Picks of other training jobs (--explore): each against the baseline's settings on its own job."""
    rows = []
    for a in h.alternatives:
        versus = "–"
        if a.speedup is not None:
            versus = f"{a.speedup:.2f}x" + (
                f" ({a.speedup_interval[0]:.2f}-{a.speedup_interval[1]:.2f}x)" if a.speedup_interval else ""
            )
        rows.append((a.job_class, a.job, str(a.trial), format_value(a.samples_per_s, "rate"), a.basis, versus))
    return Table(
        (
            Column("class"),
            Column("job"),
            Column("trial"),
            Column("samples/s"),
            Column("basis"),
            Column("vs baseline settings, same job"),
        ),
        tuple(rows),
    )


ALTERNATIVES_NOTE = (
    "Other training jobs: these train something else (LoRA, another batch) than the baseline, so "
    "their rates are not a like-for-like speedup over it; each is compared with the baseline's "
    "settings running that same job."
)


def changes_table(h: Headline) -> Table:
    return Table(
        (Column("knob"), Column("baseline"), Column("pick")), tuple((k, show(b), show(p)) for k, b, p in h.changes)
    )


def accuracy_lines(a: Accuracy) -> list[str]:
    lines = [a.note[:1].upper() + a.note[1:] + "."]
    if a.throughput_mape is not None:
        lines.append(
            f"Throughput: mean absolute percentage error {a.throughput_mape:.1%} "
            f"over {len(a.throughput)} trials"
            + (f"; Spearman rank correlation {a.spearman:.2f}" if a.spearman is not None else "")
            + "."
        )
    if a.memory_mape is not None:
        lines.append(
            f"Peak GPU memory: mean absolute percentage error {a.memory_mape:.1%} over {len(a.memory)} trials."
        )
    if a.ooms_measured:
        lines.append(
            f"Out-of-memory trials: {a.ooms_measured}; the cost model put {a.ooms_predicted} of them over "
            "the memory cap."
        )
    return lines


def importance_table(imp: Importance) -> Table:
    """Each knob's share of throughput's variance and, where computed, of peak memory's, largest first."""
    memory = dict(imp.memory)
    names = list(dict.fromkeys([k for k, _ in imp.params] + list(memory)))
    shares = dict(imp.params)
    columns = [Column("knob"), Column("throughput share", "percent")]
    if memory:
        columns.append(Column("memory share", "percent"))
    rows = tuple((name, shares.get(name, 0.0), *((memory.get(name, 0.0),) if memory else ())) for name in names)
    return Table(tuple(columns), rows)
