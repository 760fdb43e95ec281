"""The command-line options of `--framework openrlhf`, and the one-line refusal of the other framework's
options and knobs, apart from the commands that use them (_openrlhf.py)."""

from __future__ import annotations

import argparse
from typing import Any

from ...errors import UserInputError
from .._registry import DEFAULT_FRAMEWORK, framework_names, framework_strategy

_DSCHAT_ONLY = (
    "--step",
    "--he-kernels",
    "--no-he-kernels",
    "--table",
    "--replay-time-scale",
    "--storage",
    "--workers",
    "--study-name",
    "--heartbeat",
    "--hostfile",
    "--known-issues",
    "--warmup",
    "--steps",
    "--timeout",
)
"""Options of DeepSpeed-Chat plans, trials and studies: an OpenRLHF search scores every plan with the cost
model (no study, no trials), so they would be ignored."""


def add_framework_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--framework",
        choices=framework_names(),
        default=DEFAULT_FRAMEWORK,
        help=f"target RLHF framework (default: {DEFAULT_FRAMEWORK}); "
        "openrlhf: OpenRLHF 0.11.2 (DeepSpeed + vLLM + Ray)",
    )
    parser.add_argument(
        "--algo", default=None, help="openrlhf: ppo, grpo, dr_grpo, reinforce++, reinforce_baseline, rloo"
    )
    parser.add_argument(
        "--reward",
        choices=("model", "function"),
        default=None,
        help="openrlhf: a reward model (default for ppo) or a reward function (default for the others)",
    )
    parser.add_argument(
        "--script",
        default=None,
        metavar="FILE",
        help="openrlhf: an OpenRLHF launch script whose train_ppo_ray arguments are the plan (estimate) or the "
        "baseline and job (search)",
    )
    parser.add_argument("--prompt-tokens", type=int, default=256, help="openrlhf: mean prompt length (default 256)")
    parser.add_argument(
        "--answer-mean-ratio",
        type=float,
        default=0.5,
        help="openrlhf: mean answer length as a fraction of the answer budget; "
        "the tail reaches the budget (default 0.5)",
    )
    parser.add_argument(
        "--filter-pass-rate",
        type=float,
        default=1.0,
        help="openrlhf: with --algo.dynamic_filtering_enable, the share of prompt groups that pass "
        "(OpenRLHF logs dynamic_filtering_pass_rate); generation draws 1/rate as many prompts (default 1.0)",
    )


def check_framework_flags(args: argparse.Namespace) -> None:
    """Refuse a knob or option of the other framework, in one line."""
    framework = getattr(args, "framework", DEFAULT_FRAMEWORK)
    given = {t.split("=", 1)[0] for t in args.argv if t.startswith("--")}
    keys = [a.partition("=")[0].strip() for a in getattr(args, "assignments", [])]
    orl = framework_strategy("openrlhf").knob_names()
    dschat = framework_strategy(DEFAULT_FRAMEWORK).knob_names()
    if framework == DEFAULT_FRAMEWORK:
        options = ("--algo", "--reward", "--script", "--prompt-tokens", "--answer-mean-ratio", "--filter-pass-rate")
        extra = [o for o in options if o in given]
        if extra:
            raise UserInputError(f"{extra[0]} is an OpenRLHF option; add --framework openrlhf")
        for key in keys:
            if key in orl and key not in dschat:
                raise UserInputError(f"{key} is an OpenRLHF flag, not a DeepSpeed-Chat knob; add --framework openrlhf")
        return
    wrong = [o for o in _DSCHAT_ONLY if o in given]
    if wrong:
        raise UserInputError(
            f"{wrong[0]} is a DeepSpeed-Chat option; OpenRLHF plans take --algo and dotted --set flags"
        )
    if "--global-batch" in given:
        raise UserInputError(
            "--global-batch is DeepSpeed-Chat's; for OpenRLHF set the job with --set rollout.batch_size=N"
        )
    for key in keys:
        if key in orl:
            continue
        if key.replace("-", "_") in dschat:
            raise UserInputError(
                f"{key} is a DeepSpeed-Chat knob, not an OpenRLHF flag (OpenRLHF names them like ds.zero_stage)"
            )
        raise UserInputError(
            f"{key} is not an OpenRLHF flag dstune models (see 'dstune estimate --framework openrlhf --help')"
        )


def job_from_args(args: argparse.Namespace, reward: str) -> Any:
    """The job the --prompt-tokens, --answer-mean-ratio and --filter-pass-rate options describe."""
    from ._plan import OpenRLHFJob

    return OpenRLHFJob(
        reward=reward,
        prompt_tokens=args.prompt_tokens,
        answer_mean_ratio=args.answer_mean_ratio,
        filter_pass_rate=args.filter_pass_rate,
    )
