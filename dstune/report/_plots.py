"""Draw a report's figure data as PNG images with matplotlib (Agg, imported only here, lazily).

Each function takes one record from _records and returns PNG bytes, or None when
there is nothing to draw (the renderers then show the record's note instead).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from ..record import Status

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ._compare import CompareData
    from ._records import Accuracy, History, Phases, ReportData, Scatter

GIB = 2**30
DPI = 96
PHASE_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860")
STATUS_STYLE = {  # status group -> (marker, colour, label)
    Status.OK.value: ("o", "#4C72B0", "ok"),
    Status.OOM.value: ("X", "#C44E52", "out of memory"),
    "rejected": ("^", "#999999", "pruned / infeasible"),
    "failed": ("D", "#DD8452", "timeout / error / crashed"),
}


class Rendered(NamedTuple):
    """One drawn figure: a file-safe name, a title, a caption (also the alt text) and PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes


def _group(status: str) -> str:
    if status in (Status.OK, Status.OOM):
        return str(status)
    return "rejected" if status in (Status.PRUNED, Status.INFEASIBLE) else "failed"


@contextmanager
def _figure(width: float, height: float) -> Iterator[Figure]:
    import matplotlib

    with matplotlib.rc_context(
        {
            "text.parse_math": False,
            "font.size": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
        }
    ):
        from matplotlib.figure import Figure

        yield Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def scatter_png(s: Scatter) -> bytes | None:
    if not s.points:
        return None
    with _figure(8.0, 4.8) as fig:
        ax = fig.add_subplot()
        top = max((p.samples_per_s for p in s.points if math.isfinite(p.samples_per_s)), default=1.0)
        _status_points(ax, s)
        if s.front:
            ax.plot(
                [m / GIB for m, _ in s.front],
                [v for _, v in s.front],
                drawstyle="steps-post",
                c="black",
                lw=1.2,
                ls="--",
                label="Pareto front",
                zorder=2,
            )
        right = _memory_cap(ax, s, max(p.gpu_peak_bytes for p in s.points) / GIB * 1.12)
        ax.set_xlim(0, right)
        _mark_baseline_and_pick(ax, s, right)
        ax.set_xlabel("peak GPU memory per GPU (GiB)")
        ax.set_ylabel("samples/s (whole cluster)")
        ax.set_ylim(bottom=-0.03 * top, top=top * 1.15)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
        return _png(fig)


def _status_points(ax: Any, s: Scatter) -> None:
    """One marker style per status group, so a reader tells runs that fit from OOMs and rejected plans; the
    legend counts each group (a trial without throughput sits on the x axis)."""
    for group, (marker, colour, label) in STATUS_STYLE.items():
        pts = [p for p in s.points if _group(p.status) == group]
        if pts:
            ys = [p.samples_per_s if math.isfinite(p.samples_per_s) else 0.0 for p in pts]
            ax.scatter(
                [p.gpu_peak_bytes / GIB for p in pts],
                ys,
                marker=marker,
                c=colour,
                s=36,
                alpha=0.8 if group == Status.OK else 0.6,
                label=f"{label} ({len(pts)})",
                zorder=3,
            )


def _memory_cap(ax: Any, s: Scatter, right: float) -> float:
    """Draw the memory cap and return the x axis' right end: widened to show the cap, unless the cap is far
    beyond every trial (it would squash the points into a corner), when the legend alone names it."""
    if s.memory_cap_bytes:
        cap = s.memory_cap_bytes / GIB
        if cap <= 2.0 * right:
            right = max(right, cap * 1.05)
            ax.axvline(cap, c="#C44E52", lw=1.2, label=f"memory cap ({cap:.1f} GiB)")
        else:
            ax.plot([], [], c="#C44E52", lw=1.2, label=f"memory cap {cap:.1f} GiB (off the axis)")
    return right


def _mark_baseline_and_pick(ax: Any, s: Scatter, right: float) -> None:
    """The baseline and the pick stand out with large markers and a labelled arrow, the two points the report
    compares."""
    by_number = {p.number: p for p in s.points}
    for number, text, marker, colour in (
        (s.baseline_number, "baseline, broken here" if s.baseline_broken else "baseline", "s", "none"),
        (s.pick_number, "pick", "*", "#F2C14E"),
    ):
        p = by_number.get(number) if number is not None else None
        if p is not None and math.isfinite(p.samples_per_s):
            ax.scatter(
                [p.gpu_peak_bytes / GIB],
                [p.samples_per_s],
                marker=marker,
                s=220,
                facecolors=colour,
                edgecolors="black",
                linewidths=1.4,
                zorder=4,
            )
            # pick above, baseline below; each label on the side of the point with more room
            to_left = p.gpu_peak_bytes / GIB > 0.5 * right
            ax.annotate(
                f"{text} (trial {number})",
                (p.gpu_peak_bytes / GIB, p.samples_per_s),
                xytext=(-12 if to_left else 12, 12 if text == "pick" else -16),
                ha="right" if to_left else "left",
                textcoords="offset points",
                fontsize=9,
                fontweight="bold",
                zorder=5,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#888888", "alpha": 0.75},
                arrowprops={"arrowstyle": "-", "color": "#888888"},
            )


def phases_png(p: Phases) -> bytes | None:
    if not p.bars or not p.names:
        return None
    with _figure(8.0, 0.55 * len(p.bars) + 1.6) as fig:
        ax = fig.add_subplot()
        labels = [b.label for b in p.bars][::-1]
        left = [0.0] * len(labels)
        for i, name in enumerate(p.names):
            widths = [b.seconds_per_ksample[i] for b in p.bars][::-1]
            ax.barh(
                labels,
                widths,
                left=left,
                color=PHASE_COLORS[i % len(PHASE_COLORS)],
                label=name.replace("_", " "),
                height=0.6,
                zorder=3,
            )
            left = [a + w for a, w in zip(left, widths)]
        for y, (total, bar) in enumerate(zip(left, p.bars[::-1])):
            ax.annotate(f" {total:,.1f} s  (step {bar.step_s:.3g} s)", (total, y), va="center", fontsize=8)
        ax.set_xlim(right=max(left) * 1.3)
        ax.set_xlabel("seconds per 1,000 samples (lower is faster)")
        ax.grid(axis="y", visible=False)
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=len(p.names), fontsize=9, frameon=False)
        return _png(fig)


def history_png(h: History) -> bytes | None:
    points = [(n, v) for n, v in zip(h.numbers, h.values) if math.isfinite(v)]
    if not points:
        return None
    with _figure(8.0, 3.6) as fig:
        ax = fig.add_subplot()
        ax.scatter(
            [n for n, _ in points],
            [v for _, v in points],
            s=16,
            c="#4C72B0",
            alpha=0.45,
            label="trial (ok, under the cap)",
            zorder=3,
        )
        ax.plot(h.numbers, h.best, drawstyle="steps-post", c="#4C72B0", lw=2, label="best so far", zorder=4)
        if h.baseline is not None and math.isfinite(h.baseline):
            ax.axhline(h.baseline, c="gray", ls="--", lw=1, label="baseline")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial number")
        ax.set_ylabel("samples/s")
        ax.set_ylim(0, max(v for _, v in points) * 1.12)
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3, fontsize=9, frameon=False)
        return _png(fig)


def importance_png(params: tuple[tuple[str, float], ...]) -> bytes | None:
    """The 12 most important knobs; those under 0.005 are left out (and counted on the axis)."""
    if not params:
        return None
    shown = [(k, v) for k, v in params[:12] if v >= 0.005][::-1] or list(params[:1])
    hidden = len(params) - len(shown)
    with _figure(8.0, 0.32 * len(shown) + 1.0) as fig:
        ax = fig.add_subplot()
        ax.barh([k for k, _ in shown], [v for _, v in shown], color="#55A868", zorder=3)
        for y, (_, v) in enumerate(shown):
            ax.annotate(f" {v:.2f}", (v, y), va="center", fontsize=8)
        ax.set_xlim(0, max(v for _, v in shown) * 1.15)
        ax.set_xlabel("importance (share)" + (f"; {hidden} more knob(s) below 0.005 not shown" if hidden else ""))
        ax.grid(axis="y", visible=False)
        return _png(fig)


def _identity_panel(ax: Any, pairs: tuple[tuple[float, float], ...], scale: float, unit: str, title: str) -> None:
    xs, ys = [p / scale for p, _ in pairs], [m / scale for _, m in pairs]
    hi = max(xs + ys) * 1.08
    ax.plot([0, hi], [0, hi], c="gray", ls="--", lw=1, label="prediction = measurement")
    ax.scatter(xs, ys, s=22, c="#4C72B0", zorder=3)
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_aspect("equal")
    ax.set_xlabel(f"predicted {unit}")
    ax.set_ylabel(f"measured {unit}")
    ax.set_title(title, fontsize=10)


def accuracy_png(a: Accuracy) -> bytes | None:
    rank = f", Spearman {a.spearman:.2f}" if a.spearman is not None else ""
    panels = [
        (a.throughput, 1.0, "samples/s", f"throughput (MAPE {a.throughput_mape or 0:.1%}{rank})"),
        (a.memory, GIB, "peak GiB", f"GPU memory (MAPE {a.memory_mape or 0:.1%})"),
    ]
    panels = [p for p in panels if p[0]]
    if not panels:
        return None
    with _figure(4.0 * len(panels) + 0.5, 4.0) as fig:
        for ax, (pairs, scale, unit, title) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
            _identity_panel(ax, pairs, scale, unit, title)
        return _png(fig)


def compare_png(c: CompareData) -> bytes | None:
    entries = [e for e in c.entries if e.pick is not None]
    if not entries:
        return None
    metrics: list[tuple[str, Callable[[Any], float]]] = [
        ("samples/s", lambda e: e.pick.samples_per_s),
        ("samples/s per GPU", lambda e: e.samples_per_s_per_gpu),
    ]
    if c.gpu_hour_price is not None:
        metrics.append(("USD per million tokens", lambda e: e.cost_per_million_tokens))
    with _figure(3.2 * len(metrics) + 0.6, 0.35 * len(entries) + 2.4) as fig:
        axes = fig.subplots(1, len(metrics), squeeze=False, sharey=True)[0]
        labels = [e.label for e in entries][::-1]
        for i, (ax, (title, value)) in enumerate(zip(axes, metrics)):
            values = [value(e) for e in entries][::-1]
            ax.barh(labels, values, color=PHASE_COLORS[i], height=0.6, zorder=3)
            for y, v in enumerate(values):
                ax.annotate(f" {v:,.3g}", (v, y), va="center", fontsize=8)
            ax.set_xlim(0, max(values) * 1.3)
            ax.set_title(title, fontsize=10)
            ax.grid(axis="y", visible=False)
        return _png(fig)


def render_report_figures(data: ReportData) -> list[Rendered]:
    """Every figure of a study report that has data, in page order."""
    basis = "cost-model predictions" if data.header.backend == "simulate" else "measured where measured, else predicted"
    specs = [
        (
            "throughput-memory",
            "Throughput against peak GPU memory",
            scatter_png(data.scatter),
            f"Every trial's samples/s against its peak GPU memory per GPU ({basis}); the dashed step line is the "
            "Pareto front of trials that ran under the memory cap, the vertical line the cap.",
        ),
        (
            "phases",
            "Where the time goes",
            phases_png(data.phases),
            "Seconds per 1,000 samples by phase for the baseline and the five fastest other plans, so plans with "
            "different batch sizes compare fairly; the label gives the total and the time of one step.",
        ),
        (
            "history",
            "Best so far",
            history_png(data.history),
            "Throughput of each trial that ran under the cap, and the best found up to each trial number.",
        ),
        ("importance", "Parameter importance", importance_png(data.importance.params), data.importance.note),
        ("accuracy", "Predicted against measured", accuracy_png(data.accuracy), data.accuracy.note),
    ]
    return [Rendered(name, title, caption, png) for name, title, png, caption in specs if png is not None]
