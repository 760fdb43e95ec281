"""Every figure and table of one study report, computed once as frozen records (`_records`): the header and
the notes here, each other section by its own module (`_trials`, `_headline`, `_ranking`, `_charts`, `_accuracy`).

As in Optuna's visualization, data comes first and renderers (HTML, Markdown,
PNG, terminal, JSON) only draw it, so all formats show the same numbers.
"""

from __future__ import annotations

from ..record import Status
from ._accuracy import build_accuracy, numeric_column
from ._charts import PLOTTED_STATUSES, build_history, build_phases, build_scatter
from ._headline import build_headline
from ._importance import Importance, grid_importance, param_importance
from ._load import StudyDir, study_name_and_storage
from ._ranking import build_top_table
from ._records import Header, PlanFigures, ReportData, Scatter
from ._trials import feasible_trials, plan_pair


def _header(study: StudyDir) -> Header:
    m = study.meta
    counts = study.trials["status"].value_counts()
    order = [s.value for s in Status if s in counts]
    order += [s for s in counts.index if s not in order]
    versions = tuple((str(k), str(v)) for k, v in (m.get("versions") or {}).items() if v is not None)
    model = str(m.get("model", "?"))
    gpus = study.gpus
    title = f"{model} {study.step.upper()} on {m.get('hardware') or f'{gpus} x ' + str(m.get('gpu_type', '?'))}"
    devices = () if study.simulated else study.devices
    return Header(
        title,
        model,
        m.get("critic_model"),
        study.step,
        gpus,
        m.get("nodes"),
        str(m.get("gpu_type", "?")),
        study.backend,
        study_name_and_storage(m)[0],
        m.get("created"),
        versions,
        tuple((str(s), int(counts[s])) for s in order),
        devices,
    )


def _notes(study: StudyDir, scatter: Scatter, pick: PlanFigures | None) -> tuple[str, ...]:
    notes = []
    if study.simulated:
        notes.append(
            "Backend 'simulate': every figure in this report is a cost-model prediction; nothing was measured on GPUs."
        )
    elif study.backend == "replay":
        notes.append("Backend 'replay': figures are answers from a recorded table of measured trials.")
    interval = study.meta.get("interval")
    if isinstance(interval, dict) and interval.get("note"):
        level = float(interval.get("level", 0.9))
        notes.append(f"Predicted ranges are {level:.0%} intervals: {interval['note']}.")
    gpu_type = str(study.meta.get("gpu_type", ""))
    foreign = [d for d in study.devices if "cpu" in d.lower() or "simulated" in d.lower()]
    if study.on_cpu:
        notes.append(
            "Trials ran on DeepSpeed's CPU accelerator: measured figures are CPU figures, compared only with each "
            "other. The CPU accelerator has no inference kernels and no GPU memory, so no GPU memory cap applies "
            "and nothing here says how the plans run on GPUs."
        )
    elif not study.simulated and foreign:
        notes.append(
            f"Trials ran on {', '.join(foreign)}, not on {gpu_type or 'the GPUs planned for'}: measured "
            f"throughput is not comparable with the cost model's predictions for {gpu_type or 'them'}."
        )
    t = study.trials
    no_memory = (t["fig_basis"] == "measured") & numeric_column(t, "measured_gpu_peak_bytes").isna()
    if not study.simulated and no_memory.any():
        notes.append(
            f"{int(no_memory.sum())} measured trial(s) have no measured GPU memory (e.g. runs on the CPU): "
            "their memory figures are the cost model's predictions."
        )
    if pick is None:
        notes.append("No trial finished within the memory cap yet: there is no pick.")
    unplaced = int((~study.trials["status"].isin(PLOTTED_STATUSES)).sum())
    if unplaced:
        notes.append(
            f"{unplaced} trial(s) timed out, crashed or failed: they have no throughput and are not drawn in the charts."
        )
    if scatter.undrawn:
        notes.append(
            f"{scatter.undrawn} trial(s) have no memory figure (e.g. rejected by a plan rule before "
            "scoring) and are not drawn in the scatter plot."
        )
    return tuple(notes)


def build_report(study: StudyDir, *, with_importance: bool = True) -> ReportData:
    """All figure data for one study directory."""
    feasible = feasible_trials(study)
    base, pick = plan_pair(study, feasible)
    scatter = build_scatter(study, feasible, pick, base)
    if study.simulated:
        importance = grid_importance(study.path / "study.db", *study_name_and_storage(study.meta))
    elif with_importance:
        importance = param_importance(study.path / "study.db", *study_name_and_storage(study.meta))
    else:
        importance = Importance((), "parameter importance not computed (disabled)")
    return ReportData(
        header=_header(study),
        notes=_notes(study, scatter, pick),
        headline=build_headline(study, base, pick),
        top=build_top_table(study, feasible, base),
        scatter=scatter,
        phases=build_phases(study, feasible, base, scatter.pick_number, scatter.baseline_number),
        history=build_history(study, base),
        importance=importance,
        accuracy=build_accuracy(study),
    )
