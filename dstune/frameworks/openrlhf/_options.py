"""OpenRLHF's command options: each flag written once, on its field (dstune.frameworks.flag)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ...errors import UserInputError
from .._base import CommandOptions
from .._flags import flag
from ._plan import OpenRLHFJob
from ._spec import openrlhf_spec


@dataclasses.dataclass(frozen=True, kw_only=True)
class EstimateOptions(CommandOptions):
    """An OpenRLHF plan: the job (algorithm, reward, lengths), its flags, or a launch script to read them from."""

    critic_model: str | None = flag(None, help="the critic and reward model (default: the actor)")
    assignments: tuple[str, ...] = flag(
        (),
        name="--set",
        repeat=True,
        metavar="FLAG=VALUE",
        help="set an OpenRLHF flag by its dotted name, e.g. ds.zero_stage=3 (repeatable)",
    )
    algo: str | None = flag(None, help="ppo (default), grpo, dr_grpo, reinforce++, reinforce_baseline, rloo")
    reward: str | None = flag(
        None,
        help="a reward model (default for ppo) or a reward function (default for the others)",
        choices=("model", "function"),
    )
    script: str | None = flag(
        None,
        metavar="FILE",
        help="an OpenRLHF launch script whose train_ppo_ray arguments are the plan (estimate) or the "
        "baseline and job (search)",
    )
    prompt_tokens: int = flag(256, help="mean prompt length (default 256)", parse=int)
    answer_mean_ratio: float = flag(
        0.5,
        help="mean answer length as a fraction of the answer budget; the tail reaches the budget (default 0.5)",
        parse=float,
    )
    filter_pass_rate: float = flag(
        1.0,
        help="with --algo.dynamic_filtering_enable, the share of prompt groups that pass "
        "(OpenRLHF logs dynamic_filtering_pass_rate); generation draws 1/rate as many prompts (default 1.0)",
        parse=float,
    )

    def job(self, reward: str) -> OpenRLHFJob:
        """The job the --prompt-tokens, --answer-mean-ratio and --filter-pass-rate options describe."""
        return OpenRLHFJob(
            reward=reward,
            prompt_tokens=self.prompt_tokens,
            answer_mean_ratio=self.answer_mean_ratio,
            filter_pass_rate=self.filter_pass_rate,
        )

    def check(self) -> None:
        """Refuse a --set name OpenRLHF's supported version does not have (another framework's knob is
        refused before this, by the registry)."""
        known = openrlhf_spec().defaults
        for text in self.assignments:
            key = text.partition("=")[0].strip()
            if key not in known:
                raise UserInputError(
                    f"{key} is not an OpenRLHF flag dstune models (see 'dstune estimate --framework openrlhf --help')"
                )


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchOptions(EstimateOptions):
    space: Path | None = flag(None, help="search space YAML (default: search_spaces/openrlhf.yaml)", parse=Path)
    backend: str = flag(
        "auto",
        help="auto and simulate (default): every candidate scored by the cost model; profile is refused "
        "(no OpenRLHF trial runner: it needs CUDA and vLLM)",
        choices=("auto", "simulate", "profile"),
    )
    explore: str = flag(
        "", help="widen the search to other training jobs: lora, batch, samples (default: keep the baseline's job)"
    )
    stack: str | None = flag(
        None,
        metavar="NAME|local|FILE",
        help="the stack the plan will run on: a named stack, local (this machine's), or a file from the cluster "
        "(pip freeze output, a requirements file, or a saved 'dstune doctor --json'); default: OpenRLHF's "
        "supported release and its pins",
    )
    tie_tolerance: float = flag(
        0.01,
        help="plans within this fraction of the fastest count as equally fast; the pick is then "
        "the one with the lowest peak memory (default 0.01)",
        parse=float,
    )
    headroom: float | None = flag(
        None,
        help="GPU memory kept free: the pick must peak under (1 - headroom) x capacity (default: the cost model's)",
        parse=float,
    )
    out: Path | None = flag(
        None, help="output folder (default: reports/openrlhf-<model>-<gpus>x<gpu_type>-<estimator>/)", parse=Path
    )
