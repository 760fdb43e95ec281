"""Every candidate of a space as a numpy column table, with rule-breaking candidates removed.

The table has one column per plan field (the cost model's input) and one row per
valid candidate. Rule checks go through `dstune.plan.violations` once per distinct
combination of the knobs rules can read, so a 10^5-row space costs a few hundred
rule calls, not 10^5.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UserInputError
from ..plan import (
    Context,
    Plan,
    knob_fields,
    make_plan,
    redundant_rows,
    rule_reads,
    rules_for,
    step_strategy,
    violations,
)
from ._space import MAX_GRID, SearchSpace, as_python, plan_key


@dataclass
class Grid:
    """Valid candidates of a space for one model and world size."""

    space: SearchSpace
    columns: dict[str, np.ndarray]
    dropped: dict[str, int] = field(default_factory=dict)
    """Why candidates left the grid: reason kind -> count."""
    examples: dict[str, str] = field(default_factory=dict)
    """One message per reason kind, for error messages."""
    _keys: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    @property
    def step(self) -> str:
        return self.space.step

    def values(self, row: int) -> dict[str, Any]:
        return {name: as_python(column[row]) for name, column in self.columns.items()}

    def plan(self, row: int) -> Plan:
        return make_plan(self.step, self.values(row))

    def key(self, row: int) -> str:
        return plan_key(self.values(row))

    def find(self, plan_values: Mapping[str, Any]) -> int | None:
        """Row of a plan with exactly these knob values, or None when it is not a candidate."""
        if self._keys is None:
            self._keys = {}
        key = plan_key(plan_values)
        if key not in self._keys:
            mask = np.ones(len(self), dtype=bool)
            for name, column in self.columns.items():
                if name not in plan_values:
                    return None
                mask &= column == plan_values[name]
            hits = np.flatnonzero(mask)
            self._keys[key] = int(hits[0]) if len(hits) else -1
        row = self._keys[key]
        return None if row < 0 else row

    def without(self, mask: np.ndarray, kind: str, example: str) -> Grid:
        """The grid less the rows in `mask`, counted under `kind` (e.g. known issues excluded)."""
        if not mask.any():
            return self
        return Grid(
            space=self.space,
            columns={n: c[~mask] for n, c in self.columns.items()},
            dropped={**self.dropped, kind: int(mask.sum())},
            examples={**self.examples, kind: example},
        )

    def find_varied(self, params: Mapping[str, Any]) -> int | None:
        """Row whose searched knobs have these values (what an Optuna trial suggests)."""
        mask = np.ones(len(self), dtype=bool)
        for name in self.space.varied:
            mask &= self.columns[name] == params[name]
        hits = np.flatnonzero(mask)
        return int(hits[0]) if len(hits) else None


def _shape_knobs(step: str) -> frozenset[str]:
    """The step's batch and sequence knobs: the batch policy filters on them, and no hard rule reads
    the batch ones, so rule checks are cached per combination of the others."""
    strategy = step_strategy(step)
    return frozenset(strategy.batch.knobs) | frozenset(strategy.sequence_knobs)


class _Table:
    """A growing cartesian product of knob values, filtered as it grows so that an inert or
    batch-breaking combination never multiplies the knobs that come after it."""

    def __init__(self, space: SearchSpace, defaults: Mapping[str, Any]):
        self.space = space
        self.scalars = {
            f.name: space.fixed.get(f.name, defaults.get(f.name, f.default))
            for f in knob_fields(space.step)
            if f.name not in space.knobs
        }
        self.cols: dict[str, np.ndarray] = {}
        self.n = 1
        self.total = 1

    def cross(self, name: str, values: tuple[Any, ...]) -> None:
        k = len(values)
        self.cols = {key: np.repeat(col, k) for key, col in self.cols.items()}
        self.cols[name] = np.tile(np.array(values), self.n)
        self.n *= k
        self.total *= k
        for tied, source in self.space.ties.items():
            if source == name:
                self.cols[tied] = self.cols[name].copy()
        if self.n > MAX_GRID:
            raise UserInputError(
                f"search space {self.space.path}: more than {MAX_GRID:,} candidates after "
                f"filtering; fix some knobs (--set) or list fewer values"
            )

    def view(self) -> dict[str, np.ndarray]:
        """Every plan field as a column (fixed knobs broadcast)."""
        out = dict(self.cols)
        for name, value in self.scalars.items():
            if name not in out:
                out[name] = np.repeat(np.array([value]), self.n)
        return out

    def keep(self, mask: np.ndarray) -> None:
        self.cols = {key: col[mask] for key, col in self.cols.items()}
        self.n = int(mask.sum())


def _ordered_knobs(space: SearchSpace) -> list[str]:
    """Batch and sequence knobs first (the batch policy filters them), then the rest in file order."""
    shape = _shape_knobs(space.step)
    first = [n for n in space.knobs if n in shape]
    return first + [n for n in space.knobs if n not in first]


def _apply_batch_policy(space: SearchSpace, cols: dict[str, np.ndarray], world: int) -> tuple[np.ndarray, str]:
    """Derive accumulation / generation batches (fixed_global_batch) or apply the token cap.
    Returns the rows kept and an example message for the dropped ones."""
    policy = space.batch
    if policy.policy == "baseline":
        raise UserInputError(
            f"search space {space.path}: batch policy 'baseline' must be resolved against a "
            "baseline first (dstune.search.resolve_job)"
        )
    shape = step_strategy(space.step).batch
    micro = cols[shape.micro].astype(np.int64)
    keep = np.ones(len(micro), dtype=bool)
    example = ""
    if policy.policy == "fixed_global_batch":
        derived = shape.repeats
        if derived in space.knobs:
            raise UserInputError(
                f"search space {space.path}: key 'knobs.{derived}': the fixed_global_batch "
                f"policy derives it from batch.global_batch; remove it from knobs"
            )
        global_batch = policy.global_batch
        if global_batch is None:
            raise UserInputError(f"search space {space.path}: batch policy fixed_global_batch needs batch.global_batch")
        per_step = micro * world
        keep &= global_batch % per_step == 0
        cols[derived] = np.maximum(global_batch // per_step, 1)
        example = f"batch.global_batch {global_batch} is not a multiple of micro-batch x {world} GPUs"
        if shape.inner and shape.inner_repeats and policy.update_batch is not None:
            if shape.inner_repeats in space.knobs:
                raise UserInputError(
                    f"search space {space.path}: key 'knobs.{shape.inner_repeats}': "
                    "batch.update_batch derives it; remove it from knobs"
                )
            train = cols[shape.inner].astype(np.int64) * world
            keep &= policy.update_batch % train == 0
            cols[shape.inner_repeats] = np.maximum(policy.update_batch // train, 1)
    else:
        samples = micro * cols[shape.repeats] * world
        tokens = sum(cols[name] for name in step_strategy(space.step).sequence_knobs)
        keep &= samples * tokens <= policy.max_tokens
        example = f"samples per step x tokens per sample > batch.max_tokens {policy.max_tokens:,}"
    if shape.inner:  # DeepSpeed-Chat's MiniDataset cuts each generation batch into training micro-batches
        train = cols[shape.inner].astype(np.int64)
        split = micro % np.minimum(train, micro) == 0
        if shape.inner in space.varied:
            split &= train <= micro  # a larger one runs as the generation batch: the same plan twice
        if (~split & keep).any() and not example:
            example = f"{shape.inner} does not divide {shape.micro}"
        keep &= split
    return keep, example


def rule_knobs(step: str) -> frozenset[str]:
    """Knobs the hard rules read, as each rule declares them (dstune.plan.Rule.reads)."""
    fields = {f.name for f in knob_fields(step)}
    return frozenset(name for rule in rules_for(step) for name in rule_reads(rule, step)) & fields


def combination_codes(cols: Mapping[str, np.ndarray], names: list[str]) -> np.ndarray:
    """One int64 per row that is equal exactly when the rows agree on every named column (mixed radix)."""
    code = np.zeros(len(next(iter(cols.values()))), dtype=np.int64)
    for name in names:
        values, inverse = np.unique(cols[name], return_inverse=True)
        code = code * len(values) + inverse.reshape(-1)
    return code


def _rule_mask(step: str, cols: dict[str, np.ndarray], ctx: Context) -> tuple[np.ndarray, str]:
    """Rows that break no hard rule; rules run once per distinct combination of the knobs they read."""
    n = len(next(iter(cols.values())))
    if n == 0:
        return np.zeros(0, dtype=bool), ""
    batch = set(step_strategy(step).batch.knobs)
    relevant = [name for name in cols if name in rule_knobs(step) and name not in batch]
    _, first, inverse = np.unique(combination_codes(cols, relevant), return_index=True, return_inverse=True)
    ok = np.empty(len(first), dtype=bool)
    example = ""
    for i, row in enumerate(first):
        plan = make_plan(step, {name: as_python(cols[name][row]) for name in cols})
        broken = violations(plan, ctx)
        ok[i] = not broken
        if broken and not example:
            example = broken[0]
    return ok[inverse.reshape(-1)], example


def build_grid(space: SearchSpace, ctx: Context, defaults: Mapping[str, Any] | None = None) -> Grid:
    """Enumerate (batch policy and inert knobs applied as the product grows), drop rule breakers.
    A space still on the `baseline` batch policy is first fixed to the baseline's job (resolve_job).
    Raises UserInputError if nothing is left."""
    if space.batch.policy == "baseline":
        from ._jobspace import resolve_job

        if ctx.model is None:
            raise UserInputError(f"search space {space.path}: the baseline's job needs the model")
        space, _ = resolve_job(space, ctx.model, ctx.world_size, critic_model=ctx.critic_model)
    table = _Table(space, defaults or {})
    dropped: dict[str, int] = {}
    examples: dict[str, str] = {}
    order = _ordered_knobs(space)
    shape = _shape_knobs(space.step)
    batch_done = [i for i, n in enumerate(order) if n in shape]
    last_batch = batch_done[-1] if batch_done else -1

    def drop(kind: str, mask: np.ndarray, example: str) -> None:
        if mask.any():
            dropped[kind] = dropped.get(kind, 0) + int(mask.sum())
            examples.setdefault(kind, example)
            table.keep(~mask)

    if last_batch < 0:
        _batch_filter(space, table, ctx, drop)
    for i, name in enumerate(order):
        table.cross(name, space.knobs[name])
        if i == last_batch:
            _batch_filter(space, table, ctx, drop)
        drop(
            "inert knobs",
            redundant_rows(space.step, table.view(), space.varied),
            "a knob with no effect under the others' values is kept at its default",
        )
    cols = table.view()
    if len(order) == 0:
        cols = {k: v for k, v in cols.items()}
    ok, example = _rule_mask(space.step, cols, ctx)
    if (~ok).any():
        dropped["rules"], examples["rules"] = int((~ok).sum()), example
    cols = {name: column[ok] for name, column in cols.items()}
    cols = {f.name: cols[f.name] for f in knob_fields(space.step)}
    if not len(next(iter(cols.values()))):
        why = "; ".join(f"{kind} ({count:,}: e.g. {examples[kind]})" for kind, count in dropped.items())
        raise UserInputError(
            f"search space {space.path}: none of its {table.total:,} plans is valid on {ctx.world_size} GPU(s): {why}"
        )
    return Grid(space=space, columns=cols, dropped=dropped, examples=examples)


def _batch_filter(space: SearchSpace, table: _Table, ctx: Context, drop: Any) -> None:
    """Apply the batch policy once every knob it reads is in the table; derived columns join the table."""
    cols = table.view()
    keep, example = _apply_batch_policy(space, cols, ctx.world_size)
    for name in ("generation_batches", "gradient_accumulation_steps"):
        if name in cols and (name in table.cols or len(np.unique(cols[name])) > 1):
            table.cols[name] = cols[name]
        elif name in cols and len(cols[name]):
            table.scalars[name] = as_python(cols[name][0])
    drop("batch policy", ~keep, example)


def explain(
    space: SearchSpace, ctx: Context, values: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
) -> str:
    """Why the candidate with these searched values is not in the grid (for trials other samplers propose)."""
    one = dataclasses.replace(space, knobs={name: (values[name],) for name in space.knobs})
    try:
        build_grid(one, ctx, defaults)
    except UserInputError as error:
        return str(error).split(": ", 2)[-1]
    return "not a candidate of this space"
