"""Fix a search space to one training job: the baseline's, or the one the user sets.

By default every candidate trains what DeepSpeed-Chat's shipped script trains, on the
same global batch; only system knobs vary (ZeRO, offload, checkpointing, how the
global batch is split per device, the Hybrid Engine). `--set` on a job knob and
`--global-batch` change the job for the baseline and the candidates alike;
explore options (`--explore lora,batch`) widen the space to other jobs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..catalog import ModelSpec, Stack
from ..errors import UserInputError
from ..plan import (
    Baseline,
    Context,
    baseline_plan,
    job_knobs,
    job_of,
    make_plan,
    plan_to_dict,
    stack_violations,
    step_strategy,
    violations,
)
from ._space import BatchPolicy, SearchSpace


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, max(min(n, at_most), 1) + 1) if n % d == 0)


def _fit_batch(
    step: str, values: dict[str, Any], world: int, global_batch: int, update_batch: int | None, notes: list[str]
) -> None:
    """Change the baseline's per-device split so that it trains `global_batch` per step."""
    if global_batch % world:
        raise UserInputError(
            f"--global-batch {global_batch} is not a multiple of the {world} GPUs "
            f"({global_batch} % {world} = {global_batch % world})"
        )
    per_gpu = global_batch // world
    shape = step_strategy(step).batch
    micro_name, steps_name = shape.micro, shape.repeats
    micro = _largest_divisor(per_gpu, int(values[micro_name]))
    before = (values[micro_name], values[steps_name])
    values[micro_name], values[steps_name] = micro, per_gpu // micro
    if before != (values[micro_name], values[steps_name]):
        notes.append(
            f"{micro_name} x {steps_name} {before[0]} x {before[1]} -> {micro} x {per_gpu // micro} "
            f"({global_batch} per step on {world} GPUs)"
        )
    if not (shape.inner and shape.inner_repeats):
        return
    train = _largest_divisor(micro, int(values[shape.inner]))
    if train != values[shape.inner]:
        notes.append(f"{shape.inner} {values[shape.inner]} -> {train} (must divide {micro_name})")
        values[shape.inner] = train
    if update_batch is not None:
        if update_batch % (train * world):
            raise UserInputError(
                f"samples per update {update_batch} is not a multiple of training micro-batch {train} x {world} GPUs"
            )
        values[shape.inner_repeats] = update_batch // (train * world)


def resolve_job(
    space: SearchSpace,
    model: ModelSpec,
    world: int,
    *,
    critic_model: ModelSpec | None = None,
    global_batch: int | None = None,
    stack: Stack | None = None,
) -> tuple[SearchSpace, Baseline]:
    """The space restricted to the baseline's job (unless widened), and the baseline for that job; `stack` (the
    target, None: installed) decides which of its stack rules the baseline breaks."""
    step = space.step
    jobs = set(job_knobs(step))
    pins = {k: space.fixed[k] for k in space.pinned if k in jobs}
    baseline = baseline_plan(step, model, world, critic_model=critic_model, workload={**space.workload, **pins})
    values = plan_to_dict(baseline.plan)
    notes = list(baseline.adjustments) + [
        f"{k} -> {v} (--set)" for k, v in pins.items() if not any(n.startswith(f"{k} ") for n in baseline.adjustments)
    ]
    policy = space.batch
    if global_batch is not None:
        if global_batch < 1:
            raise UserInputError(f"--global-batch must be at least 1, got {global_batch}")
        policy = BatchPolicy(policy="fixed_global_batch", global_batch=global_batch, update_batch=None)
    if policy.policy == "fixed_global_batch":
        if policy.global_batch is None:
            raise UserInputError(f"search space {space.path}: batch policy fixed_global_batch needs batch.global_batch")
        _fit_batch(step, values, world, int(policy.global_batch), policy.update_batch, notes)
    if policy.policy in ("baseline", "fixed_global_batch"):
        batches = job_of(step, values, world).batches
        figures = step_strategy(step).batch.figures
        policy = BatchPolicy(
            policy="fixed_global_batch",
            global_batch=batches[figures[0]],
            update_batch=batches[figures[1]] if len(figures) > 1 else None,
        )
    plan = make_plan(step, values)
    ctx = Context(world_size=world, model=model, critic_model=critic_model, stack=stack)
    broken = violations(plan, ctx, stack=False)
    if broken:
        raise UserInputError(f"baseline {baseline.script} with this job breaks a rule: {broken[0]}")
    fixed = dict(space.fixed)
    for name in jobs:
        if name not in space.knobs and name not in fixed:
            fixed[name] = values[name]
    resolved = dataclasses.replace(space, fixed=fixed, batch=policy)
    cannot_run = stack_violations(plan, ctx)
    return resolved, dataclasses.replace(baseline, plan=plan, adjustments=tuple(notes), cannot_run=cannot_run)
