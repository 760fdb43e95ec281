"""`run_trial`: one plan, one fresh process group, one typed result."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserInputError
from ..plan import Context, Plan, plan_to_dict, step_strategy, to_deepspeed, validate
from ._agents import read_hostfile
from ._collect import collect
from ._launch import LAUNCHERS, free_port, write_launch
from ._prebuild import OpBuildError, ops_for, prebuild
from ._process import Finished, run_group
from ._result import (
    LOG_FILE,
    RESULT_FILE,
    SPEC_FILE,
    STAGES_FILE,
    TrialResult,
    write_json_atomic,
)

if TYPE_CHECKING:
    from ..catalog import ClusterSpec, ModelSpec
    from ..costmodel import Estimate

BUILD_LOG_FILE = "ops_build.log"


def trial_device(env: Mapping[str, str] | None = None) -> str:
    """ "cpu" under DS_ACCELERATOR=cpu, "cuda" when NVML sees GPUs; otherwise a one-line refusal."""
    merged = {**os.environ, **(env or {})}
    if merged.get("DS_ACCELERATOR", "").lower() == "cpu":
        return "cpu"
    from ..catalog import detect_local_gpus

    if detect_local_gpus():
        return "cuda"
    raise UserInputError(
        "no GPU found on this machine; set DS_ACCELERATOR=cpu to profile on the CPU "
        "(the timings then check the code path, not GPU performance)"
    )


def _check_cpu_dtype(plan: Plan) -> None:
    if plan.dtype != "fp16":
        return
    import torch

    if not torch.ops.mkldnn._is_mkldnn_fp16_supported():
        raise UserInputError(
            "DeepSpeed's CPU accelerator has no fp16 on this CPU (it refuses "
            "'Type fp16 is not supported'); use --set dtype=bf16"
        )


def _check_local_gpus(wanted: int) -> None:
    from ..catalog import detect_local_gpus

    found = len(detect_local_gpus())
    if wanted > found:
        raise UserInputError(
            f"--gpus {wanted} on one node, but this machine has {found} GPU(s); pass --nodes and --hostfile for more"
        )


def _model_payload(spec: ModelSpec) -> dict[str, Any]:
    return {"name": spec.name, "hf_config": json.loads(json.dumps(dict(spec.hf_config), default=str))}


def _check_setup(
    plan: Plan,
    *,
    model: ModelSpec,
    critic_model: ModelSpec | None,
    cluster: ClusterSpec,
    warmup: int,
    steps: int,
    hostfile: Path | None,
    launcher: str,
    env: Mapping[str, str] | None,
) -> str:
    """Everything that can be refused before launching; returns the device the trial runs on."""
    validate(plan, Context(world_size=cluster.world_size, model=model, critic_model=critic_model))
    if launcher not in LAUNCHERS:
        raise UserInputError(f"unknown launcher {launcher!r}; choose one of {', '.join(LAUNCHERS)}")
    if cluster.nodes > 1 and hostfile is None:
        raise UserInputError(f"--nodes {cluster.nodes} needs --hostfile (the deepspeed launcher's host list)")
    if launcher == "torchrun" and cluster.nodes > 1:
        assert hostfile is not None  # refused just above
        hosts = read_hostfile(hostfile)
        if len(hosts) != cluster.nodes or any(h.slots != cluster.gpus_per_node for h in hosts):
            raise UserInputError(
                f"--hostfile {hostfile}: {len(hosts)} host(s) with slots "
                f"{sorted({h.slots for h in hosts})}, but --nodes {cluster.nodes} x "
                f"{cluster.gpus_per_node} GPU(s) per node"
            )
    if warmup < 0 or steps < 1:
        raise UserInputError(f"need warmup >= 0 and steps >= 1 (got warmup={warmup}, steps={steps})")
    device = trial_device(env)
    if device == "cpu":
        _check_cpu_dtype(plan)
    elif cluster.nodes == 1:
        _check_local_gpus(cluster.gpus_per_node)
    return device


def _prepare_dir(trial_dir: Path) -> Path:
    """A new or empty directory: a leftover worker file would be read as this trial's result."""
    trial_dir = Path(trial_dir).resolve()
    if trial_dir.exists() and (not trial_dir.is_dir() or any(trial_dir.iterdir())):
        raise UserInputError(f"trial directory {trial_dir} already exists and is not empty")
    trial_dir.mkdir(parents=True, exist_ok=True)
    return trial_dir


def _write_spec(
    path: Path,
    plan: Plan,
    model: ModelSpec,
    critic_model: ModelSpec | None,
    world: int,
    warmup: int,
    steps: int,
    memory_cap_gb: float | None,
) -> None:
    """What the worker reads: knobs, model configs (no hub), the role configs, step counts."""
    critic = _model_payload(critic_model) if critic_model is not None and step_strategy(plan.step).uses_critic else None
    write_json_atomic(
        path,
        {
            "step": plan.step,
            "plan": plan_to_dict(plan),
            "model": _model_payload(model),
            "critic_model": critic,
            "ds_configs": to_deepspeed(plan, world),
            "warmup": warmup,
            "steps": steps,
            "memory_cap_gb": memory_cap_gb,
        },
    )


def _remove_shm_buffers(port: int) -> None:
    """DeepSpeed's CPU all-reduce keeps a 64 MiB buffer per rank in /dev/shm, named after the master
    port, and unlinks it only at a clean exit; ranks that end by os._exit or a kill leave it behind,
    and a long search would fill RAM. The group is gone by now, so its buffers are garbage."""
    for path in Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{port}_*"):
        path.unlink(missing_ok=True)


def _unbuilt(error: OpBuildError, trial_dir: Path, device: str, world_size: int) -> TrialResult:
    """The result of a trial whose op did not build: an error with the build log's tail, written like any."""
    from ..record import Status

    log = trial_dir / BUILD_LOG_FILE
    tail = log.read_text(encoding="utf-8", errors="replace")[-2000:] if log.exists() else None
    result = TrialResult(
        status=Status.ERROR,
        world_size=world_size,
        device=device,
        error=str(error),
        log_tail=tail,
        trial_dir=str(trial_dir),
        notes=("not launched: a DeepSpeed op this plan loads failed to build",),
    )
    write_json_atomic(trial_dir / RESULT_FILE, result.to_dict())
    return result


class _StageReader:
    """Passes each new line of rank 0's stage file to `say` (called about once a second while ranks run)."""

    def __init__(self, path: Path, say: Callable[[str], None]) -> None:
        self.path, self.say, self.seen = path, say, 0

    def __call__(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8").split("\n")[:-1]  # complete lines only
        except OSError:
            return
        for line in lines[self.seen :]:
            self.say(line)
        self.seen = len(lines)


def run_trial(
    plan: Plan,
    *,
    model: ModelSpec,
    critic_model: ModelSpec | None,
    cluster: ClusterSpec,
    trial_dir: Path,
    warmup: int = 1,
    steps: int = 2,
    timeout_s: float = 900,
    memory_cap_gb: float | None = None,
    hostfile: Path | None = None,
    launcher: str = "deepspeed",
    env: Mapping[str, str] | None = None,
    predicted: Estimate | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrialResult:
    """Measure `plan` with real DeepSpeed in a fresh process group, started in its own session.

    Raises UserInputError before launching anything for an invalid plan or setup
    (broken rule, unknown launcher, no GPU and no DS_ACCELERATOR=cpu, non-empty
    trial_dir). Every outcome after launch is a TrialResult whose status comes
    from the worker's result files and the exit code. `predicted` (the cost
    model's estimate, computed when not given) supplies the FLOP count for
    tflops_per_gpu and mfu. `progress` is told each stage as the trial
    passes it (op build, launch, the ranks' own stages from their stage file).
    """
    device = _check_setup(
        plan,
        model=model,
        critic_model=critic_model,
        cluster=cluster,
        warmup=warmup,
        steps=steps,
        hostfile=hostfile,
        launcher=launcher,
        env=env,
    )
    if predicted is None:
        from ..costmodel import estimate

        predicted = estimate(plan, model, cluster, critic_model=critic_model)
    trial_dir = _prepare_dir(trial_dir)
    _write_spec(trial_dir / SPEC_FILE, plan, model, critic_model, cluster.world_size, warmup, steps, memory_cap_gb)
    port = free_port()
    argv, overrides = write_launch(trial_dir, cluster, port, device, launcher, hostfile, env, timeout_s)
    say = progress or (lambda _: None)
    try:
        _build_ops(plan, cluster, device, overrides, trial_dir, say)
    except OpBuildError as error:
        return _unbuilt(error, trial_dir, device, cluster.world_size)
    say(f"starting {cluster.world_size} rank(s) with the {launcher} launcher")
    finished, launched_at = _run_ranks(argv, overrides, trial_dir, port, timeout_s, say, watch=bool(progress))
    result = collect(
        trial_dir,
        finished=finished,
        launched_at=launched_at,
        device=device,
        world_size=cluster.world_size,
        timeout_s=timeout_s,
        plan=plan,
        cluster=cluster,
        predicted=predicted,
    )
    write_json_atomic(trial_dir / RESULT_FILE, result.to_dict())
    return result


def _build_ops(
    plan: Plan,
    cluster: ClusterSpec,
    device: str,
    overrides: Mapping[str, str],
    trial_dir: Path,
    say: Callable[[str], None],
) -> None:
    """Build the DeepSpeed ops the plan loads before the trial clock starts, so a JIT build is never timed
    as the plan's own step time (nor eats its timeout). Raises OpBuildError when one fails to build."""
    ops = ops_for(to_deepspeed(plan, cluster.world_size), device=device, ranks_per_node=cluster.gpus_per_node)
    if ops:
        say(f"DeepSpeed ops this plan loads: {', '.join(ops)} (built once, before the trial clock)")
    prebuild(ops, env=overrides, log_path=trial_dir / BUILD_LOG_FILE)


def _run_ranks(
    argv: list[str],
    overrides: Mapping[str, str],
    trial_dir: Path,
    port: int,
    timeout_s: float,
    say: Callable[[str], None],
    *,
    watch: bool,
) -> tuple[Finished, float]:
    """Run the process group to its end or its timeout, passing rank 0's stages to `say` when `watch`; the
    shared-memory buffers the ranks leave behind are removed whatever happens. Returns how the group
    finished and when it was launched."""
    stages = _StageReader(trial_dir / STAGES_FILE, say)
    launched_at = time.time()
    try:
        finished = run_group(
            argv,
            env={**os.environ, **overrides},
            cwd=trial_dir,
            log_path=trial_dir / LOG_FILE,
            timeout_s=timeout_s,
            launched_at=launched_at,
            on_poll=stages if watch else None,
        )
    finally:
        _remove_shm_buffers(port)
    if watch:
        stages()
    return finished, launched_at


__all__ = ["run_trial", "trial_device"]
