"""From what the user asked of a search to what `run_search` needs: the policy decisions in one place.

`SearchOptions` holds the request as typed values (the CLI's flags, nothing decided yet);
`plan_search` decides the backend (auto: profile when this machine has the GPUs, else
simulate), default trial counts, the study and output names, the memory cap (the cost
model's `headroom_fraction`, replaced by the user's headroom) and the dtype on the CPU
accelerator, and returns a `PreparedSearch`: the `SearchRequest` and what the output says
about those decisions. The CLI only parses, calls this and `run_search`, and prints.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..catalog import Setup, Stack, detect_local_gpus, load_model, resolve_setup, target_transformers
from ..costmodel import CostConstants
from ..errors import UserInputError
from ..plan import DEFAULT_STEP, step_strategy
from ._backends import Backend, ProfileBackend, ReplayBackend, SimulateBackend
from ._pick import TIE_TOLERANCE
from ._request import SearchRequest
from ._space import EXPLORE_OPTIONS, SearchSpace, default_space_path, load_space
from ._storage import HEARTBEAT_S

BACKENDS = ("auto", "simulate", "profile", "replay")
KNOWN_ISSUES = ("mark", "exclude")
DEFAULT_TRIALS = {"profile": 12, "replay": 40, "simulate": 40}
"""New trials when none are asked for: real trials are costly, replayed ones cheap; simulate scores every
candidate and does not count trials."""
SIMULATED_NOTE = "simulated: no GPUs of this kind here; figures are cost-model predictions"


@dataclass(frozen=True, kw_only=True)
class SearchOptions:
    """What the user asked of a search, as given: names, choices and numbers, nothing decided yet."""

    model: str
    """Catalog name, Hugging Face id or local config of the actor."""
    gpus: int
    """World size."""
    step: str = DEFAULT_STEP
    nodes: int | None = None
    """None: whole nodes of the GPU type."""
    gpu_type: str = "auto"
    """A catalog GPU, or auto: the local GPUs NVML sees (else the catalog's default)."""
    critic_model: str | None = None
    """None: the search space's critic, else the actor's shipped pairing."""
    assignments: tuple[str, ...] = ()
    """KNOB=VALUE pins (DeepSpeed-Chat flag names) fixed in the space."""
    space: Path | None = None
    """None: search_spaces/<step>.yaml (or the tiny space for tiny models)."""
    explore: tuple[str, ...] = ()
    """Other training jobs to search too (EXPLORE_OPTIONS); empty keeps the baseline's job."""
    global_batch: int | None = None
    """Prompts per PPO iteration (samples per step for SFT/RM); None: the baseline script's."""
    backend: str = "auto"
    """One of BACKENDS."""
    table: Path | None = None
    """replay: the recorded trials.csv."""
    replay_time_scale: float = 0.0
    trials: int | None = None
    """New trials in all; None: DEFAULT_TRIALS of the chosen backend."""
    workers: int = 1
    """Processes on this machine sharing one study (profile and replay)."""
    he_kernels: str = "auto"
    """yes, no or auto (the target stack's HE verdict for the model's family)."""
    stack: str | None = None
    """--stack: a named stack, `local`, or a cluster's file; None: simulate targets the framework's reference
    stack (`catalog.reference_stack`), profile and replay this machine's (`local`)."""
    known_issues: str = "exclude"
    """One of KNOWN_ISSUES: a pick is a plan to launch, so known crashes are left out unless asked."""
    tie_tolerance: float = TIE_TOLERANCE
    seed: int | None = None
    headroom: float | None = None
    """Fraction of GPU memory kept free; None: the cost model's `headroom_fraction`."""
    storage: str | None = None
    """Optuna storage URL; None: OUT/study.db."""
    study_name: str | None = None
    heartbeat_s: int = HEARTBEAT_S
    out: Path | None = None
    """None: reports/<model>-<gpus>x<hardware>-<step>/."""
    warmup: int = 1
    steps: int = 2
    timeout_s: float = 900
    hostfile: Path | None = None


@dataclass(frozen=True)
class PreparedSearch:
    """A decided search: the request for `run_search` (per worker) and what the output says about it."""

    request: SearchRequest
    backend_note: str
    """Which backend runs and why, e.g. that the figures are predictions."""
    out: Path
    storage_shown: str
    """The storage as the user gave it (or OUT/study.db, relative): no absolute paths in the files."""
    hardware: str
    """The GPU type, or "cpu" when trials ran (or were recorded) on DeepSpeed's CPU accelerator."""
    trials: int
    """New trials in all, over every worker."""
    workers: int
    notes: tuple[str, ...] = ()
    """Decisions the output states up front and the export keeps among its notes."""
    stack_note: str = ""
    """The first line of the output: which stack the plan targets and why."""

    @property
    def setup(self) -> Setup:
        return self.request.setup

    @property
    def hardware_label(self) -> str:
        world = self.setup.cluster.world_size
        if self.hardware == "cpu":
            return f"{world} x cpu (DeepSpeed CPU accelerator)"
        return f"{world} x {self.setup.cluster.gpu.name}"


def plan_search(options: SearchOptions) -> PreparedSearch:
    """Decide everything the search needs from what the user asked; UserInputError for what cannot run."""
    _check(options)
    setup = resolve_setup(
        step=options.step,
        model=options.model,
        gpus=options.gpus,
        with_critic=step_strategy(options.step).uses_critic,
        nodes=options.nodes,
        gpu_type=options.gpu_type,
        critic_model=options.critic_model,
    )
    space, pinned = _space(options, setup)
    if step_strategy(options.step).uses_critic and space.critic_model and not options.critic_model:
        setup = dataclasses.replace(setup, critic_model=load_model(space.critic_model))
    backend_name, backend_note = choose_backend(options, setup)
    trials = options.trials if options.trials is not None else DEFAULT_TRIALS[backend_name]
    if trials < 1:
        raise UserInputError(f"--trials must be at least 1, got {trials}")
    if options.workers > 1:
        _check_workers(options, backend_name)
    replay = (
        ReplayBackend(options.table, options.step, time_scale=options.replay_time_scale)
        if backend_name == "replay" and options.table
        else None
    )
    stack, stack_note = _target_stack(options, backend_name, setup, replay)
    he_kernels, he_note = _he_kernels(options, setup, stack)
    from ..calibration import calibration_for

    calibration = calibration_for(setup.cluster.gpu.name, step=setup.step)
    constants = _constants(calibration.constants, stack, options)
    device = _device(backend_name, replay)
    hardware = "cpu" if device == "cpu" else setup.cluster.gpu.name
    names = f"{setup.model.name}-{setup.cluster.world_size}x{hardware}-{options.step}"
    out = options.out or Path("reports") / names
    backend = replay or _backend(backend_name, options, setup, constants, (he_kernels, target_transformers(stack)), out)
    space, dtype_note = cpu_dtype(space, device, pinned)
    request = SearchRequest(
        setup=setup,
        space=space,
        backend=backend,
        storage=options.storage or f"sqlite:///{out.resolve()}/study.db",
        study_name=options.study_name or f"{names}-{backend_name}",
        trials=-(-trials // options.workers),
        seed=options.seed,
        shipped=_shipped(options.step, backend),
        global_batch=options.global_batch,
        tie_tolerance=options.tie_tolerance,
        heartbeat_s=options.heartbeat_s,
        he_kernels=he_kernels,
        known_issues=options.known_issues,
        prior=constants,
        interval_sd=math.log(calibration.interval_factor) / 1.645,
        interval_note=calibration.backing,
        stack=stack,
    )
    notes = tuple(n for n in (dtype_note, f"predictions: {he_note}" if he_note else None) if n)
    return PreparedSearch(
        request=request,
        backend_note=backend_note,
        out=out,
        storage_shown=options.storage or f"sqlite:///{out}/study.db",
        hardware=hardware,
        trials=trials,
        workers=options.workers,
        notes=notes,
        stack_note=stack_note,
    )


def _target_stack(
    options: SearchOptions, backend_name: str, setup: Setup, replay: ReplayBackend | None
) -> tuple[Stack, str]:
    """The stack the plan will run on and the line that names it (dstune.doctor.target_stack); a replay table
    without --stack brings its own, since its rows ran there: its verdicts, not this machine's, say what broke."""
    from ..doctor import target_stack

    stack, stack_note = target_stack(options.stack, backend_name, setup.model.family, runs=_shipped_breaks(setup))
    if replay is not None and replay.stack is not None and options.stack is None:
        stack = replay.stack  # the table's rows ran there: its verdicts, not this machine's, say what was broken
        stack_note = f"target stack: {stack.label}, the stack the replay table's rows ran on"
    return stack, stack_note


def _constants(calibrated: CostConstants, stack: Stack, options: SearchOptions) -> CostConstants:
    """The calibration's constants, told whether the target stack runs eager attention (when it says) and
    given --headroom (when set), so predictions and the memory cap are the target stack's and the user's."""
    constants = calibrated
    if stack.eager_attention is not None:
        constants = dataclasses.replace(constants, published_stack=1.0 if stack.eager_attention else 0.0)
    if options.headroom is not None:
        constants = dataclasses.replace(constants, headroom_fraction=options.headroom)
    return constants


def choose_backend(options: SearchOptions, setup: Setup) -> tuple[str, str]:
    """(backend, the sentence saying which and why): auto profiles when this machine has the GPUs asked for."""
    if options.backend == "replay":
        if not options.table:
            raise UserInputError("--backend replay needs --table FILE")
        return "replay", f"replay: figures are measurements recorded in {options.table}"
    if options.backend == "simulate":
        return "simulate", "simulated (--backend simulate); figures are cost-model predictions"
    if options.backend == "profile":
        from ..profile import trial_device

        if trial_device() == "cpu":
            return "profile", (
                "profiled on the CPU (DS_ACCELERATOR=cpu): real trials that check the code path; "
                "timings are not GPU performance"
            )
        return "profile", "profiled: real trials on this machine"
    gpu = setup.cluster.gpu.name
    local = [g for g in detect_local_gpus() if g.spec is not None and g.spec.name == gpu]
    if setup.cluster.nodes == 1 and len(local) >= setup.cluster.world_size:
        return "profile", f"profiled: {len(local)} local {gpu} GPU(s)"
    return "simulate", SIMULATED_NOTE


def cpu_dtype(space: SearchSpace, device: str, pinned: list[str]) -> tuple[SearchSpace, str | None]:
    """On DeepSpeed's CPU accelerator a default fp16 becomes bf16 (it has no fp16 kernels here)."""
    if device != "cpu" or "dtype" in pinned or space.fixed.get("dtype", "fp16") != "fp16":
        return space, None
    return (
        dataclasses.replace(space, fixed={**space.fixed, "dtype": "bf16"}),
        "CPU accelerator: dtype fp16 -> bf16 (DeepSpeed's CPU backend trains in bf16; --set dtype to choose)",
    )


def _check(options: SearchOptions) -> None:
    if options.backend not in BACKENDS:
        raise UserInputError(f"--backend {options.backend}: choose from {', '.join(BACKENDS)}")
    if options.known_issues not in KNOWN_ISSUES:
        raise UserInputError(f"--known-issues {options.known_issues}: choose from {', '.join(KNOWN_ISSUES)}")
    unknown = [x for x in options.explore if x not in EXPLORE_OPTIONS]
    if unknown:
        raise UserInputError(f"--explore {unknown[0]}: choose from {', '.join(EXPLORE_OPTIONS)}")
    if options.headroom is not None and not 0.0 <= options.headroom < 1.0:
        raise UserInputError(f"--headroom must be in [0, 1), got {options.headroom}")
    if not 0.0 <= options.tie_tolerance < 0.5:
        raise UserInputError(f"--tie-tolerance must be in [0, 0.5), got {options.tie_tolerance}")
    if options.heartbeat_s < 1:
        raise UserInputError(f"--heartbeat must be at least 1 second, got {options.heartbeat_s}")
    if options.workers < 1:
        raise UserInputError(f"--workers must be at least 1, got {options.workers}")


def _space(options: SearchOptions, setup: Setup) -> tuple[SearchSpace, list[str]]:
    """The space file with the --set pins fixed and the --explore widening applied, and the pinned knobs."""
    from ..plan import parse_assignments

    path = options.space or default_space_path(options.step, setup.model.name)
    space = load_space(path, options.step)
    pins = parse_assignments(options.step, list(options.assignments)) if options.assignments else {}
    if pins:
        space = space.with_fixed(pins)
    return space.widen(options.explore), list(pins)


def _check_workers(options: SearchOptions, backend: str) -> None:
    if backend not in ("profile", "replay"):
        raise UserInputError(
            f"--workers {options.workers} needs --backend profile or replay (simulate has nothing to share)"
        )
    gpus = len(detect_local_gpus())
    need = options.gpus * options.workers
    if gpus and gpus < need:
        raise UserInputError(
            f"--workers {options.workers} x --gpus {options.gpus} needs {need} GPUs; this machine has {gpus}"
        )


def _shipped_breaks(setup: Setup) -> Callable[[Stack], str]:
    """stack -> the stack rule DeepSpeed-Chat's shipped script for this setup breaks there ("" when none)."""
    from ..plan import Context, baseline_plan, stack_violations

    def breaks(stack: Stack) -> str:
        try:
            base = baseline_plan(setup.step, setup.model, setup.cluster.world_size, critic_model=setup.critic_model)
        except UserInputError:
            return ""
        ctx = Context(setup.cluster.world_size, model=setup.model, critic_model=setup.critic_model, stack=stack)
        return ", ".join(b.rule for b in stack_violations(base.plan, ctx))

    return breaks


def _he_kernels(options: SearchOptions, setup: Setup, stack: Stack) -> tuple[bool, str]:
    """The HE kernel assumption of the predictions on the target stack, and its sentence ("" without the HE)."""
    if not step_strategy(options.step).uses_hybrid_engine:
        return True, ""
    from ..doctor import resolve_he_kernels

    return resolve_he_kernels(options.he_kernels, setup.model.family, stack)


def _device(backend: str, replay: ReplayBackend | None) -> str:
    """Where the trials run (or ran): "cpu" on DeepSpeed's CPU accelerator."""
    if replay is not None:
        return replay.device
    if backend == "profile":
        from ..profile import trial_device

        return trial_device()
    return ""


def _backend(
    name: str, options: SearchOptions, setup: Setup, constants: CostConstants, target: tuple[bool, str], out: Path
) -> Backend:
    """`target`: whether the target stack runs HE kernels, and its transformers (the cost model's inputs)."""
    he_kernels, transformers_version = target
    if name == "simulate":
        return SimulateBackend(
            model=setup.model,
            critic_model=setup.critic_model,
            cluster=setup.cluster,
            cap_bytes=constants.memory_cap_bytes(setup.cluster.gpu.memory_bytes),
            he_kernels=he_kernels,
            transformers_version=transformers_version,
            constants=constants,
        )
    return ProfileBackend(
        model=setup.model,
        critic_model=setup.critic_model,
        cluster=setup.cluster,
        trials_dir=out / "trials",
        warmup=options.warmup,
        steps=options.steps,
        timeout_s=options.timeout_s,
        hostfile=options.hostfile,
    )


def _shipped(step: str, backend: Backend) -> tuple:
    """Measured rows shipped with dstune for a profiled study on this device (the surrogate's head start)."""
    if not backend.measures:
        return ()
    from ._shipped import shipped_observations

    return shipped_observations(step, getattr(backend, "device", None))
