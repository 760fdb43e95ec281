"""Terminal tables of an OpenRLHF prediction: memory per GPU per phase for each GPU group, the phase
timeline of each group (what colocated and split placements do with their GPUs), and the verdict."""

from __future__ import annotations

from typing import Any

PHASES = ("generate", "experience", "train", "weight sync")


def _gib(value: float) -> str:
    return f"{value / 2**30:,.1f}"


def _shown(group: str, groups: dict[str, list[str]]) -> str:
    """The cost model's group ("actor") as the plan names it ("actor+ref" when the reference shares it)."""
    if group in groups:
        return group
    return next((name for name, roles in groups.items() if roles and roles[0] == group), group)


def render_plan(p: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    groups = ", ".join(f"{g} [{'+'.join(r)}]" for g, r in p["groups"].items())
    console.print(
        f"[bold]{escape(str(p['model']))}[/bold] "
        + escape(f"OpenRLHF {p['estimator']} on {p['gpus']} x {p['gpu_type']}: {p['placement']} ({groups})")
    )
    if p.get("plan_basis"):
        console.print("plan: " + escape(p["plan_basis"]))
    if p.get("version_note"):
        console.print(
            "[yellow]note:[/yellow] "
            + escape(f"{p['version_note']}; this plan is for OpenRLHF {p['openrlhf_version']}")
        )
    if p["placement"] == "async":
        console.print("[yellow]note:[/yellow] async trains on rollouts of the previous policy (one step off-policy)")
    for issue in p.get("known_issues", []):
        console.print(f"[red]{escape(issue)}[/red]")
    for note in p.get("parser_notes", []):
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    for group, phases in p["memory_per_gpu"].items():
        table = Table(title=escape(f"{title}: GPU memory per GPU, group '{_shown(group, p['groups'])}' (GiB)"))
        table.add_column("component")
        for phase in PHASES:
            table.add_column(phase, justify="right")
        components = list(dict.fromkeys(k for ph in PHASES for k in phases[ph]))
        for comp in components:
            table.add_row(escape(comp), *(_gib(phases[ph][comp]) if comp in phases[ph] else "-" for ph in PHASES))
        table.add_row("[bold]total[/bold]", *(f"[bold]{_gib(sum(phases[ph].values()))}[/bold]" for ph in PHASES))
        console.print(table)
    console.print(f"usable per GPU: {_gib(p['gpu_cap_bytes'])} GiB of {_gib(p['gpu_capacity_bytes'])} GiB")
    if p.get("max_gpu_memory_utilization") is not None:
        console.print(
            f"vllm.gpu_memory_utilization may go up to {p['max_gpu_memory_utilization']:.2f} here: generation beside "
            "what DeepSpeed keeps resident (its 16-bit weights stay through offload_states)"
        )
    timeline = Table(title=escape(f"{title}: phase timeline per GPU group (busy s / phase window s)"))
    timeline.add_column("group")
    for phase in PHASES:
        timeline.add_column(phase, justify="right")
    for group, busy in p["timeline_busy_s"].items():
        cells = []
        for phase in PHASES:
            window = p["phases_s"][phase]
            cells.append(f"{busy[phase]:,.1f} / {window:,.1f}" if busy[phase] > 0 else f"idle / {window:,.1f}")
        timeline.add_row(escape(_shown(group, p["groups"])), *cells)
    console.print(timeline)
    parts = ", ".join(f"{k} {v:,.2f}" for k, v in p["phase_parts_s"].items() if v)
    console.print(f"parts (s): {parts}", markup=False)
    console.print(p["answer_length_model"], markup=False)
    verdict = (
        "[green]fits[/green]" if p["feasible"] else "[red]" + escape("; ".join(p["infeasible_reasons"])) + "[/red]"
    )
    console.print(
        f"iteration {p['iteration_s']:,.1f} s, {p['samples_per_s']:,.2f} samples/s, {p['tokens_per_s']:,.0f} tokens/s "
        f"(predicted; interval: {escape(p['constants_basis'])}); {verdict}"
    )
    fit = p.get("fitting_plan")
    if fit:
        changes = " ".join(
            f"--{k}" if v is True else f"(no --{k})" if v is False else f"--{k} {v}" for k, v in fit["changes"].items()
        )
        console.print(
            f"[green]a plan that fits[/green] (same job, {fit['samples_per_s']:,.2f} samples/s, peak "
            f"{_gib(fit['gpu_peak_bytes'])} GiB): {escape(changes)}"
        )
    elif fit is not None:
        console.print("[red]no plan of the search space fits this job[/red]")


def render_speedup(p: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    table = Table(title="best plan per placement (why the pick's placement wins)")
    for column in ("placement", "GPUs per group", "samples/s", "iteration s", *PHASES, "GPU busy", "peak GiB"):
        table.add_column(column, justify="left" if column in ("placement", "GPUs per group") else "right")
    for name, b in p["best_by_placement"].items():
        groups = ", ".join(f"{g} {r[-1].split()[0]}" for g, r in b["groups"].items())
        table.add_row(
            escape(name),
            escape(groups),
            f"{b['samples_per_s']:,.2f}",
            f"{b['iteration_s']:,.1f}",
            *(f"{b['phases_s'][ph]:,.1f}" for ph in PHASES),
            f"{b['gpu_busy_fraction']:.0%}",
            _gib(b["gpu_peak_bytes"]),
        )
    console.print(table)
    console.print(
        "colocated plans run every phase on all GPUs and pay sleep/wake; split plans keep vLLM awake but "
        "leave each group idle outside its phases; async overlaps the next generation with this training "
        "(one step off-policy)"
    )
    console.print(
        f"searched {p['candidates_scored']} plans ({p['refused_by_checks']} refused by OpenRLHF's checks): "
        f"{p['search']}",
        markup=False,
    )
    console.print(f"baseline: {p['baseline_basis']}", markup=False)
    if p["speedup"] is None:
        reasons = "; ".join(p["baseline"].get("infeasible_reasons", [])) or "no baseline"
        console.print(
            f"baseline does not run as predicted ({reasons}); no speedup stated", style="yellow", markup=False
        )
    else:
        console.print(
            f"predicted speedup over the baseline: {p['speedup']:.2f}x "
            f"({p['baseline']['samples_per_s']:,.2f} -> {p['samples_per_s']:,.2f} samples/s); {p['speedup_basis']}",
            markup=False,
        )
    console.print(f"launch script: {p['launch_script']}", markup=False)


def render_alternatives(p: dict[str, Any]) -> None:
    """--explore: one line per other job class, labelled as different training (never the headline)."""
    if not p["alternatives"]:
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    console.print(f"the speedup above is for the baseline's job: {escape(p['job'])}")
    console.print(
        f"--explore {','.join(p['explore'])}: other jobs, [bold]different training[/bold] (not comparable to it)"
    )
    for alt in p["alternatives"]:
        head = f"  {escape(alt['job'])}:"
        if alt.get("pick", True) is None:
            console.print(f"{head} no pick ({escape(alt['why_none'])})")
            continue
        versus = (
            f"{alt['speedup_vs_baseline_settings']:.2f}x over the baseline's settings on this job"
            if alt["speedup_vs_baseline_settings"] is not None
            else alt["baseline_settings_note"]
        )
        broken = " [red]known broken on 0.11.2 (OpenRLHF#1349)[/red]" if alt["known_issues"] else ""
        console.print(f"{head} {alt['placement']}, {alt['samples_per_s']:,.2f} samples/s ({versus}){broken}")
