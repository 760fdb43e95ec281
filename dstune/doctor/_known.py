"""Known-broken or risky combinations (data/known_issues.yaml) and the matcher the search uses.

A plan is a dict of DeepSpeed-Chat knob -> value, or a column table (knob -> numpy
array, one row per candidate) for a vectorised mask. The model is a catalog spec
or a family name; the stack is the target `catalog.Stack` (versions and HE verdicts), the installed
one (`local`) only when asked for.
A clause on a knob the plan does not have never matches (e.g. PPO knobs on an SFT plan).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import numpy as np

from ..catalog import ModelSpec, Stack

Severity = Literal["broken", "risky"]
_OPS = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}


@dataclass(frozen=True, kw_only=True)
class Clause:
    """`knob op value`, e.g. inference_tp_size gt 1."""

    knob: str
    op: str
    value: Any

    def holds(self, column: Any) -> Any:
        """Elementwise on arrays, plain bool on scalars."""
        if self.op == "in":
            return np.isin(column, list(self.value)) if isinstance(column, np.ndarray) else column in self.value
        return _OPS[self.op](column, self.value)


@dataclass(frozen=True, kw_only=True)
class KnownIssue:
    id: str
    severity: Severity
    consequence: str
    sources: tuple[str, ...]
    when: tuple[Clause, ...] = ()
    families: tuple[str, ...] = ()
    """Empty: every family."""
    gqa: bool | None = None
    """Only models with (True) or without (False) grouped-query attention; None: any."""
    he_kernels: bool | None = None
    """Only when the doctor's HE status for the family is this; None: any."""
    he_verdict: str | None = None
    """Only when the doctor's HE verdict for the family is this (kernels, no kernels, broken); None: any."""
    versions: Mapping[str, str] = field(default_factory=dict)
    """Package -> PEP 440 specifier the installed version must satisfy."""
    observed: tuple[Mapping[str, Any], ...] = ()
    """Stacks this project installed and what the doctor found there (stack, verdicts, evidence)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity,
            "consequence": self.consequence,
            "sources": list(self.sources),
            **({"observed": [dict(o) for o in self.observed]} if self.observed else {}),
        }


def _issue(raw: Mapping[str, Any]) -> KnownIssue:
    clauses = []
    for knob, condition in (raw.get("when") or {}).items():
        ((op, value),) = condition.items()
        if op not in _OPS and op != "in":
            raise ValueError(f"known issue {raw['id']}: unknown operator {op!r}")
        clauses.append(Clause(knob=knob, op=op, value=tuple(value) if op == "in" else value))
    stack = dict(raw.get("stack") or {})
    he = stack.pop("he_kernels", None)
    verdict = stack.pop("he_verdict", None)
    return KnownIssue(
        id=raw["id"],
        severity=raw["severity"],
        consequence=" ".join(raw["consequence"].split()),
        sources=tuple(raw.get("sources", ())),
        when=tuple(clauses),
        families=tuple(raw.get("families", ())),
        gqa=(raw.get("model") or {}).get("gqa"),
        he_kernels=he,
        he_verdict=verdict,
        versions=dict(stack.get("versions") or {}),
        observed=tuple(raw.get("observed") or ()),
    )


@functools.lru_cache(maxsize=1)
def known_issues() -> tuple[KnownIssue, ...]:
    """The shipped data file, parsed once."""
    import yaml

    text = (resources.files("dstune.doctor") / "data" / "known_issues.yaml").read_text(encoding="utf-8")
    return tuple(_issue(raw) for raw in yaml.safe_load(text))


def current_stack() -> Stack:
    """Installed versions (metadata) and the cached HE probe (probed once per stack): the `local` stack."""
    from ._target import local_stack

    return local_stack()


def _family_and_gqa(model: ModelSpec | str) -> tuple[str, bool | None]:
    if isinstance(model, ModelSpec):
        return model.family, model.num_kv_heads < model.num_heads
    return str(model), None


def _applies(issue: KnownIssue, family: str, gqa: bool | None, stack: Stack) -> bool:
    """The parts of an issue that do not depend on the plan's knobs."""
    if issue.families and family not in issue.families:
        return False
    if issue.gqa is not None and gqa is not None and gqa != issue.gqa:
        return False
    if issue.gqa is True and gqa is None:
        return False  # a bare family name says nothing about the shape
    if (
        issue.he_kernels is not None
        and stack.he_kernels.get(family) is not None
        and stack.he_kernels.get(family) != issue.he_kernels
    ):
        return False
    if issue.he_verdict is not None and stack.he_verdicts.get(family) != issue.he_verdict:
        return False  # a verdict condition needs the verdict: unknown never matches
    for package, spec in issue.versions.items():
        from packaging.specifiers import SpecifierSet

        version = stack.versions.get(package)
        if version is None or version not in SpecifierSet(spec, prereleases=True):
            return False  # an unpinned version never matches: the issue is not claimed
    return True


def match_known_issues(
    plan: Mapping[str, Any], model: ModelSpec | str, stack: Stack | None = None
) -> tuple[KnownIssue, ...]:
    """The known issues one plan (knob -> value) hits with this model on this stack."""
    stack = stack or current_stack()
    family, gqa = _family_and_gqa(model)
    return tuple(
        issue
        for issue in known_issues()
        if _applies(issue, family, gqa, stack)
        and all(c.knob in plan and bool(c.holds(plan[c.knob])) for c in issue.when)
    )


def known_issue_masks(
    columns: Mapping[str, np.ndarray], model: ModelSpec | str, stack: Stack | None = None
) -> dict[str, np.ndarray]:
    """Issue id -> boolean mask over the candidates of a column table (only issues hit by some row)."""
    stack = stack or current_stack()
    family, gqa = _family_and_gqa(model)
    rows = len(next(iter(columns.values()))) if columns else 0
    masks: dict[str, np.ndarray] = {}
    for issue in known_issues():
        if not _applies(issue, family, gqa, stack) or any(c.knob not in columns for c in issue.when):
            continue
        mask = np.ones(rows, dtype=bool)
        for clause in issue.when:
            mask &= np.asarray(clause.holds(np.asarray(columns[clause.knob])), dtype=bool)
        if mask.any():
            masks[issue.id] = mask
    return masks


def known_issue_mask(
    columns: Mapping[str, np.ndarray],
    model: ModelSpec | str,
    stack: Stack | None = None,
    severities: tuple[Severity, ...] = ("broken",),
) -> np.ndarray:
    """One mask: candidates that hit any issue of the given severities (default: broken only)."""
    rows = len(next(iter(columns.values()))) if columns else 0
    wanted = {i.id for i in known_issues() if i.severity in severities}
    mask = np.zeros(rows, dtype=bool)
    for issue_id, hit in known_issue_masks(columns, model, stack).items():
        if issue_id in wanted:
            mask |= hit
    return mask
