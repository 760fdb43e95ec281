"""OpenRLHF's launch script for a plan: `ray job submit ... -- python3 -m openrlhf.cli.train_ppo_ray`
with the plan's flags, spelled out in full (the 0.11.2 parser's own names; tests run that parser on it)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from ...record import atomic_write
from ._deepspeed import role_config, role_worlds
from ._plan import LIST_FLAGS, OpenRLHFPlan
from ._spec import openrlhf_spec

if TYPE_CHECKING:
    from ._records import OpenRLHFSearch

REWARD_PLACEHOLDER = "${REWARD_MODEL:?set REWARD_MODEL to the reward model (path or hub id)}"
"""The reward model is the user's: the script refuses to start until it is named."""
_FORMAT_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
"""A value an example script leaves for its user to fill in (`--logger.wandb.key '{wandb_token}'`)."""
_SHELL_VARIABLE = re.compile(r"[^\"`\\$]*\$\{[A-Za-z_][A-Za-z0-9_]*(:\?[^}\"`\\$]*)?\}[^\"`\\$]*")


def _quote(token: str) -> str:
    """Shell-quote a token, but let a `${VAR}` in it (the examples' placeholders) expand."""
    return f'"{token}"' if _SHELL_VARIABLE.fullmatch(token) else shlex.quote(token)


def plan_argv(plan: OpenRLHFPlan, actor: str, reward: str | None) -> list[str]:
    """The arguments after `-m openrlhf.cli.train_ppo_ray`: the baseline's unmodelled arguments (or, without a
    baseline, models and data), then every modelled flag that differs from the parser's default. `reward` is a
    reward model path, or None for a reward function."""
    if plan.kept:
        argv = list(plan.kept)
    else:
        argv = ["--actor.model_name_or_path", actor]
        if plan.has_reward_model:
            argv += ["--reward.model_name_or_path", reward or REWARD_PLACEHOLDER]
        else:
            argv += ["--reward.remote_url", "/openrlhf/examples/python/reward_func.py"]
        argv += [
            "--data.prompt_dataset",
            "OpenRLHF/prompt-collection-v0.1",
            "--data.input_key",
            "context_messages",
            "--data.apply_chat_template",
            "--ds.param_dtype",
            "bf16",
        ]
    argv = _without_placeholders(argv)[0]
    for flag, value in plan.flags().items():
        if value is None or value is False:
            continue
        if flag in LIST_FLAGS:
            argv += [f"--{flag}", *str(value).split()]
        else:
            argv += [f"--{flag}"] if value is True else [f"--{flag}", str(value)]
    return argv


def _without_placeholders(argv: list[str]) -> tuple[list[str], list[str]]:
    """The arguments less every option whose value is an unfilled `{name}` placeholder, and a line for each
    saying what to pass instead: a literal placeholder would reach the trainer and fail there."""
    kept: list[str] = []
    dropped: list[str] = []
    option: list[str] = []
    for token in [*argv, "--"]:
        if token.startswith("--"):
            if any(_FORMAT_PLACEHOLDER.fullmatch(t) for t in option[1:]):
                dropped.append(
                    f"dropped {' '.join(option)} (the example's placeholder): add {option[0]} <your value> to set it"
                )
            else:
                kept += option
            option = [token]
        else:
            option.append(token)
    return kept, dropped


def deepspeed_checks(plan: OpenRLHFPlan) -> list[tuple[dict[str, object], int]]:
    """Each role's DeepSpeed config as OpenRLHF builds it, with the world size DeepSpeed checks it at."""
    return [(role_config(plan, role), world) for role, world in role_worlds(plan).items()]


def check_deepspeed(plan: OpenRLHFPlan) -> None:
    """DeepSpeed's own config class on every role's config at that role's GPUs (ConfigRejected names it)."""
    from ...export._deepspeed_check import check_configs

    check_configs([(dict(c), w) for c, w in deepspeed_checks(plan)])


def launch_script(plan: OpenRLHFPlan, actor: str, reward: str | None, note: str) -> str:
    spec = openrlhf_spec()
    args = plan_argv(plan, actor, reward)
    dropped = _without_placeholders(list(plan.kept))[1]
    lines: list[list[str]] = []
    for token in args:
        if token.startswith("--") or not lines:
            lines.append([token])
        else:
            lines[-1].append(token)
    body = " \\\n".join("   " + " ".join(_quote(a) for a in line) for line in lines)
    return (
        "#!/usr/bin/env bash\n"
        f"# {note}\n" + "".join(f"# {line}\n" for line in dropped) + f"# OpenRLHF {', '.join(spec.supported_versions)} "
        f"(vLLM {spec.pins['vllm']}, DeepSpeed {spec.pins['deepspeed']}, "
        f"Ray {spec.pins['ray']}); start Ray first: ray start --head --num-gpus {plan.gpus_used}\n"
        "set -euo pipefail\n"
        'ray job submit --address="http://127.0.0.1:8265" \\\n'
        '   --runtime-env-json=\'{"working_dir": "/openrlhf"}\' \\\n'
        f"   -- python3 -m {spec.entrypoint} \\\n{body}\n"
    )


def write_launch_script(path: Path, text: str) -> None:
    atomic_write(path, text)
    path.chmod(0o755)


def write_files(record: OpenRLHFSearch, out: Path) -> list[str]:
    """The pick's launch script (its every role's DeepSpeed config checked by DeepSpeed first, before
    anything is written), the stack's requirements.txt, then plan.json: the names written."""
    from ...export._pins import REQUIREMENTS, requirements_text, with_preflight

    pick = record.pick_plan
    check_deepspeed(pick)
    out.mkdir(parents=True, exist_ok=True)
    note = f"dstune pick for {record.model} {pick.estimator} on {record.gpus} x {record.gpu_type}"
    script = launch_script(pick, record.hub, None, note)
    write_launch_script(out / "run_openrlhf.sh", with_preflight(script, record.stack))
    atomic_write(out / REQUIREMENTS, requirements_text(record.stack))
    atomic_write(out / "plan.json", json.dumps(record.to_json(), indent=2, default=str) + "\n")
    return ["run_openrlhf.sh", REQUIREMENTS, "plan.json"]
