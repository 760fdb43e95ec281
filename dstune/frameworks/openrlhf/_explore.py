"""`--explore` for OpenRLHF: widen the fixed job to other jobs a user would trade (LoRA instead of full
fine-tuning, a larger or smaller rollout, more or fewer samples per prompt), as `--explore` does for
DeepSpeed-Chat. Each other job class gets its own pick and is compared only with the baseline's system
settings running that same job: it is different training, never a like-for-like speedup. The headline pick
and speedup stay the baseline's job."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ...catalog import ClusterSpec, ModelSpec
from ...errors import UserInputError
from ._cost import estimate_openrlhf
from ._plan import OpenRLHFPlan
from ._rules import broken_checks, plan_known_issues
from ._search import candidates, pick_index

LORA_FLAGS = frozenset({"ds.lora.rank", "ds.lora.alpha", "ds.lora.target_modules"})
EXPLORE_NAMES = ("lora", "batch", "samples")
"""lora: LoRA ranks (frozen base weights); batch: prompts per rollout and the train batch scaled alike (the same
optimizer steps per rollout); samples: samples per prompt with the prompts scaled inversely (the same samples
per rollout)."""


@dataclass(frozen=True)
class JobAlternative:
    job: str
    changes: dict[str, Any]
    pick: OpenRLHFPlan | None
    row: dict[str, Any] | None
    baseline_settings_row: dict[str, Any] | None
    """The baseline's system settings running this job (None where they break one of OpenRLHF's checks)."""
    why_none: str = ""


def parse_explore(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [n for n in names if n not in EXPLORE_NAMES]
    if unknown:
        raise UserInputError(
            f"--explore {unknown[0]!r} is not an OpenRLHF explore option; choose from lora, batch, samples"
        )
    return names


def load_explore(path: Path) -> dict[str, dict[str, list[Any]]]:
    """The space file's `explore:` section (already read once by load_space, so it is YAML)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    section = raw.get("explore", {}) if isinstance(raw, dict) else {}
    if not isinstance(section, dict):
        raise UserInputError(f"search space {path}: explore must map names to value lists")
    for name, values in section.items():
        if (
            name not in EXPLORE_NAMES
            or not isinstance(values, dict)
            or not all(isinstance(v, list) and v for v in values.values())
        ):
            raise UserInputError(
                f"search space {path}: explore.{name} is not one of {', '.join(EXPLORE_NAMES)} with lists"
            )
    return section


def _options(base: OpenRLHFPlan, name: str, values: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Job changes of one explore name (the baseline's job, {}, among them)."""
    if name == "lora":
        ranks = dict.fromkeys(int(r) for r in [0, *values.get("ds.lora.rank", [])])  # a LoRA baseline gets full too
        return [{}] + [{"ds.lora.rank": r} for r in ranks if r != int(base["ds.lora.rank"] or 0)]
    prompts, samples, train = (
        int(base[k]) for k in ("rollout.batch_size", "rollout.n_samples_per_prompt", "train.batch_size")
    )
    out: list[dict[str, Any]] = [{}]
    for factor in values.get("factor", []):
        if name == "batch":
            p, t = int(round(prompts * factor)), int(round(train * factor))
            if p >= 1 and t >= 1:
                out.append({"rollout.batch_size": p, "train.batch_size": t})
        else:
            n = int(round(samples * factor))
            if n >= 1 and n != samples and (prompts * samples) % n == 0:
                out.append({"rollout.n_samples_per_prompt": n, "rollout.batch_size": prompts * samples // n})
    return out


def job_variants(
    base: OpenRLHFPlan, names: tuple[str, ...], section: dict[str, dict[str, list[Any]]]
) -> list[dict[str, Any]]:
    """Every other job the chosen names reach (the product of their options), the baseline's job left out."""
    per_name = [_options(base, n, section.get(n, {})) for n in names]
    out, seen = [], set()
    for combo in itertools.product(*per_name):
        changes: dict[str, Any] = {}
        for part in combo:
            changes |= part
        changes = {k: v for k, v in changes.items() if base[k] != v}
        key = tuple(sorted(changes.items()))
        if changes and key not in seen:
            seen.add(key)
            out.append(changes)
    return out


def job_label(plan: OpenRLHFPlan) -> str:
    """The job in words, so that no two classes read alike."""
    rank = int(plan["ds.lora.rank"] or 0)
    targets = str(plan["ds.lora.target_modules"] or "all-linear")
    trained = f"LoRA r={rank} on {targets}" if rank else "full fine-tuning"
    return (
        f"{trained}, {plan['rollout.batch_size']} prompts x {plan['rollout.n_samples_per_prompt']} samples/rollout, "
        f"train batch {plan['train.batch_size']}, {plan['train.max_epochs']} epoch(s), {plan.estimator}"
    )


def explore_openrlhf(
    base: OpenRLHFPlan,
    names: tuple[str, ...],
    section: dict[str, dict[str, list[Any]]],
    model: ModelSpec,
    critic_model: ModelSpec,
    cluster: ClusterSpec,
    space: dict[str, list[Any]],
    tie_tolerance: float = 0.01,
    cap: float | None = None,
) -> list[JobAlternative]:
    """One pick per other job class, each beside the baseline's settings running that job. OpenRLHF's checks
    read no LoRA flag, so the classes that differ only in LoRA share one checked candidate list."""
    gpus, per_node = cluster.world_size, min(cluster.gpus_per_node, cluster.world_size)
    checked: dict[tuple[tuple[str, Any], ...], list[OpenRLHFPlan]] = {}
    out = []
    for changes in job_variants(base, names, section):
        job_base = base.with_flags(changes)
        label = job_label(job_base)
        settings_row = None
        if not broken_checks(job_base, gpus, per_node):
            settings_row = estimate_openrlhf([job_base], model, critic_model, cluster, cap=cap).row(0)
        key = tuple(sorted((k, v) for k, v in changes.items() if k not in LORA_FLAGS))
        if key not in checked:
            checked[key] = candidates(base.with_flags(dict(key)), gpus, per_node, space)[0]
        lora = {k: v for k, v in changes.items() if k in LORA_FLAGS}
        plans = [p.with_flags(lora) for p in checked[key]] if lora else checked[key]
        if not plans:
            why = "no plan of the space passes OpenRLHF's checks for this job"
            out.append(JobAlternative(label, changes, None, None, settings_row, why))
            continue
        table = estimate_openrlhf(plans, model, critic_model, cluster, cap=cap)
        pick = pick_index(table, tie_tolerance)
        if pick is None:
            out.append(JobAlternative(label, changes, None, None, settings_row, "no plan of this job fits"))
            continue
        out.append(JobAlternative(label, changes, table.plans[pick], table.row(pick), settings_row))
    return out


def alternatives_payload(alternatives: list[JobAlternative]) -> list[dict[str, Any]]:
    """plan.json's `alternatives`: every entry says it is different training."""
    out = []
    for alt in alternatives:
        settings = alt.baseline_settings_row
        fits = bool(settings and settings.get("feasible"))
        entry: dict[str, Any] = {
            "different_training": True,
            "job": alt.job,
            "job_changes": alt.changes,
            "baseline_settings_samples_per_s": settings["samples_per_s"] if fits and settings else None,
            "baseline_settings_note": ""
            if fits
            else "the baseline's settings break an OpenRLHF check for this job"
            if settings is None
            else "the baseline's settings do not fit this job",
        }
        if alt.pick is None or alt.row is None:
            entry |= {"pick": None, "why_none": alt.why_none}
        else:
            entry |= {
                "known_issues": plan_known_issues(alt.pick),
                "placement": alt.pick.placement,
                "flags": alt.pick.flags(),
                "samples_per_s": alt.row["samples_per_s"],
                "gpu_peak_bytes": alt.row["gpu_peak_bytes"],
                "speedup_vs_baseline_settings": alt.row["samples_per_s"] / settings["samples_per_s"]
                if fits and settings
                else None,
            }
        out.append(entry)
    return out
