"""DeepSpeed-Chat's command options: each flag written once, on its field (dstune.frameworks.flag)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ...costmodel import DEFAULT_CONSTANTS
from ...plan import DEFAULT_STEP, step_names
from .._base import CommandOptions
from .._flags import flag


def _words(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


_HE_HELP = (
    "whether Hybrid Engine generation uses DeepSpeed's inference kernels; auto (default): "
    "what 'dstune doctor' finds for the model's family on this stack"
)
_STACK_HELP = (
    "the stack the plan will run on: a named stack (he: constraints/he.txt; dschat-2023: DeepSpeed 0.9.0 "
    "+ transformers 4.28.1), local (this machine's), or a file from the cluster (pip freeze output, a "
    "requirements file, or a saved 'dstune doctor --json'); default: simulate targets DeepSpeed-Chat's "
    "reference stack for the model family, profile this machine's"
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SetupOptions(CommandOptions):
    """The step and its models, and the knobs set by DeepSpeed-Chat's flag names."""

    step: str = flag(DEFAULT_STEP, help=f"RLHF step (default: {DEFAULT_STEP})", choices=step_names())
    critic_model: str | None = flag(
        None, help="PPO critic/reward model (default: opt-350m for OPT actors, else the actor)"
    )
    assignments: tuple[str, ...] = flag(
        (),
        name="--set",
        repeat=True,
        metavar="KNOB=VALUE",
        help="set a plan knob by its DeepSpeed-Chat flag name (repeatable)",
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class EstimateOptions(SetupOptions):
    stack: str | None = flag(None, help=_STACK_HELP, metavar="NAME|local|FILE")
    he_kernels: str = flag(
        "auto",
        help=_HE_HELP,
        choices=("yes", "no", "auto"),
        also=(
            (
                "--no-he-kernels",
                "no",
                "same as --he-kernels no (the model's own generate(), as DeepSpeed 0.19.8 runs OPT with "
                "transformers 4.49-5.23)",
            ),
        ),
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProfileOptions(SetupOptions):
    hostfile: Path | None = flag(None, help="deepspeed launcher hostfile (multi-node)", parse=Path)
    warmup: int = flag(1, help="warm-up steps, not measured (default: 1)", parse=int)
    steps: int = flag(2, help="measured steps (default: 2)", parse=int)
    timeout: float = flag(
        900.0, help="end the whole trial after SEC seconds (default: 900)", parse=float, metavar="SEC"
    )
    memory_cap_gb: float | None = flag(
        None, help="limit each process's usable GPU memory to X GiB (CUDA only)", parse=float, metavar="X"
    )
    out: Path | None = flag(
        None, help="trial directory (default: a new timestamped one under ./dstune-trials/)", parse=Path
    )
    launcher: str = flag("deepspeed", help="process launcher (default: deepspeed)", choices=("deepspeed", "torchrun"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchFlags(SetupOptions):
    """`dstune search`'s flags; `search_options()` is the library's SearchOptions of the same names."""

    space: Path | None = flag(None, help="search space YAML (default: search_spaces/<step>.yaml)", parse=Path)
    backend: str = flag(
        "auto",
        help="auto (default): profile when this machine has the GPUs, else simulate",
        choices=("auto", "simulate", "profile", "replay"),
    )
    table: Path | None = flag(None, help="replay: CSV of measured trials (e.g. a trials.csv)", parse=Path)
    replay_time_scale: float = flag(
        0.0,
        help="replay: sleep X times each row's measured step time per answer (benchmarks of "
        "parallel workers; default 0)",
        parse=float,
        metavar="X",
    )
    trials: int | None = flag(
        None,
        help="profile/replay: new trials to run (default: 12 profile, 40 replay); simulate scores "
        "every candidate and ignores it",
        parse=int,
    )
    global_batch: int | None = flag(
        None,
        help="the job's global batch: prompts per PPO iteration (samples per step for SFT/RM, pairs for DPO); "
        "default: the baseline script's",
        parse=int,
    )
    explore: tuple[str, ...] = flag(
        (),
        help="widen the search to other training jobs: lora, batch or lora,batch (default: keep "
        "the baseline's job: same trained parameters and batch sizes)",
        parse=_words,
    )
    he_kernels: str = flag(
        "auto",
        help="whether Hybrid Engine generation uses DeepSpeed's inference kernels in the predictions; "
        "auto (default): what 'dstune doctor' finds for the model's family on this stack",
        choices=("yes", "no", "auto"),
    )
    stack: str | None = flag(None, help=_STACK_HELP, metavar="NAME|local|FILE")
    known_issues: str = flag(
        "exclude",
        help="exclude (default): leave out plans that hit a known-broken combination on this stack and "
        "name the risky ones the picks hit; mark: keep the broken ones too, named (see 'dstune doctor')",
        choices=("mark", "exclude"),
    )
    tie_tolerance: float = flag(
        0.01,
        help="plans within this fraction of the fastest count as equally fast; the pick is then "
        "the one that hits fewer known issues, then the one with the lowest peak memory (default 0.01)",
        parse=float,
    )
    seed: int | None = flag(None, help="sampler seed", parse=int)
    headroom: float | None = flag(
        None,
        help="GPU memory kept free: the pick must peak under (1 - headroom) x capacity "
        f"(default {DEFAULT_CONSTANTS.headroom_fraction:.2f}, the cost model's)",
        parse=float,
    )
    storage: str | None = flag(
        None,
        help="Optuna storage: sqlite:///FILE (default: OUT/study.db), postgresql://USER@HOST/DB for "
        "several machines (pip install 'dstune[postgres]'), or journal:FILE on a shared filesystem",
    )
    workers: int = flag(
        1,
        help="profile/replay: run N workers on this machine against one study, each on its own "
        "GPUs (CUDA_VISIBLE_DEVICES split by --gpus); --trials is the total (default 1)",
        parse=int,
    )
    study_name: str | None = flag(
        None,
        help="Optuna study name (default: <model>-<gpus>x<hardware>-<step>-<backend>); workers "
        "with the same --storage and name share one study",
    )
    heartbeat_s: int = flag(
        20,
        name="--heartbeat",
        help="seconds between a running trial's heartbeats; a trial whose worker is silent for 3 of "
        "them is failed and its plan retried once (default 20)",
        parse=int,
        metavar="SEC",
    )
    out: Path | None = flag(None, help="output folder (default: reports/<model>-<gpus>x<gpu_type>-<step>/)", parse=Path)
    warmup: int = flag(1, help="profile: warm-up steps per trial", parse=int)
    steps: int = flag(
        5,
        help="profile: measured steps per trial, whose spread gives each throughput its 90%% interval (default 5)",
        parse=int,
    )
    confirm_rounds: int | None = flag(
        None,
        help="profile: after the search, measure the baseline and the pick again, alternately, N times each; "
        "the measured speedup and its 90%% interval come from these pairs (default 3; 0: off)",
        parse=int,
        metavar="N",
    )
    timeout_s: float = flag(900, name="--timeout", help="profile: seconds before a trial is killed", parse=float)
    hostfile: Path | None = flag(None, help="profile on several nodes: the deepspeed launcher's hostfile", parse=Path)

    def search_options(self) -> Any:
        """The library's typed SearchOptions: the fields of the same names (imported here: the search
        library loads Optuna, which `--help` must not)."""
        from ...search import SearchOptions

        return SearchOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(SearchOptions)})
