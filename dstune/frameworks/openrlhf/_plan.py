"""One OpenRLHF plan: its dotted flags (as the 0.11.2 parser names them) and the job facts that are
not flags (the reward source, prompt length and the answer-length distribution)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import Any

from ...errors import UserInputError
from ._spec import openrlhf_spec

PLACEMENTS = ("colocated", "split", "async")
LIST_FLAGS = frozenset({"ds.lora.target_modules"})
"""Flags the parser takes with nargs="*": a plan keeps their values as one space-separated string."""


@dataclass(frozen=True)
class OpenRLHFJob:
    """What the trainer trains, beyond its flags. OpenRLHF 0.11.2 has no prompt-length flag: a prompt is
    whatever the dataset holds, cut to `data.max_len` less the answer budget."""

    reward: str = "model"
    """"model" (a reward model, `--reward.model_name_or_path`) or "function" (`--reward.remote_url`)."""
    prompt_tokens: int = 256
    answer_mean_ratio: float = 0.5
    """Mean answer length as a fraction of the answer budget; the tail (the longest answers) reaches the
    budget itself. A synchronous step waits for its longest answer."""
    filter_pass_rate: float = 1.0
    """With `--algo.dynamic_filtering_enable`: the share of prompt groups whose rewards pass the filter
    (OpenRLHF logs it as dynamic_filtering_pass_rate). It depends on the data, so the user states it."""

    def __post_init__(self) -> None:
        if not 0.0 < self.filter_pass_rate <= 1.0:
            raise UserInputError(f"filter pass rate must be in (0, 1], not {self.filter_pass_rate}")
        if self.reward not in ("model", "function"):
            raise UserInputError(f"reward must be 'model' or 'function', not {self.reward!r}")
        if not 0.0 < self.answer_mean_ratio <= 1.0:
            raise UserInputError(f"answer mean ratio must be in (0, 1], not {self.answer_mean_ratio}")
        if self.prompt_tokens < 1:
            raise UserInputError("prompt tokens must be at least 1")


@dataclass(frozen=True)
class OpenRLHFPlan:
    values: Mapping[str, Any]
    job: OpenRLHFJob = field(default_factory=OpenRLHFJob)
    kept: tuple[str, ...] = ()
    """Arguments of the baseline script that dstune does not model (models, data, algorithm details such as
    KL loss or dynamic filtering): written into the launch script as they are, so the job stays the same."""

    def kept_value(self, flag: str) -> str | None:
        """The value of an unmodelled flag the plan passes through (None when absent; "" for a switch)."""
        tokens = list(self.kept)
        if f"--{flag}" not in tokens:
            return None
        i = tokens.index(f"--{flag}")
        return tokens[i + 1] if i + 1 < len(tokens) and not tokens[i + 1].startswith("--") else ""

    def __getitem__(self, flag: str) -> Any:
        return self.values[flag]

    def with_values(self, **changes: Any) -> OpenRLHFPlan:
        """Keyword names spell dots as double underscores: `with_values(ds__zero_stage=3)`."""
        return self.with_flags({k.replace("__", "."): v for k, v in changes.items()})

    def with_flags(self, changes: Mapping[str, Any]) -> OpenRLHFPlan:
        return replace(self, values=MappingProxyType({**self.values, **changes}))

    @property
    def estimator(self) -> str:
        return str(self["algo.advantage.estimator"])

    @property
    def has_critic(self) -> bool:
        """The parser keeps a critic only for gae (it is then the reward model, or the actor with a function)."""
        return self.estimator == "gae"

    @property
    def has_ref(self) -> bool:
        return float(self["algo.kl.init_coef"]) > 0

    @property
    def has_reward_model(self) -> bool:
        return self.job.reward == "model"

    @property
    def placement(self) -> str:
        if self["train.async_enable"]:
            return "async"
        return "colocated" if self["train.colocate_all"] else "split"

    def gpus_of(self, role: str) -> int:
        return int(self[f"{role}.num_nodes"]) * int(self[f"{role}.num_gpus_per_node"])

    @property
    def engines(self) -> int:
        return int(self["vllm.num_engines"] or 0)

    @property
    def vllm_gpus(self) -> int:
        return self.engines * int(self["vllm.tensor_parallel_size"])

    @property
    def answer_budget(self) -> int:
        """Tokens an answer may take: `rollout.max_new_tokens`, or what `data.max_len` leaves after the prompt."""
        explicit = self["rollout.max_new_tokens"]
        return int(explicit) if explicit else max(1, int(self["data.max_len"]) - self.job.prompt_tokens)

    def groups(self) -> dict[str, tuple[str, ...]]:
        """GPU group -> the roles it hosts, as train() in train_ppo_ray.py asks Ray for them: colocated roles
        share one placement group's bundles; every other group reserves GPUs of its own."""
        return dict(self._groups)

    @cached_property
    def _groups(self) -> dict[str, tuple[str, ...]]:
        roles = ["actor"] + (["ref"] if self.has_ref else [])
        second = (["critic"] if self.has_critic else []) + (["reward"] if self.has_reward_model else [])
        if self["train.colocate_all"]:
            # train_ppo_ray.py: `if args.critic.model_name_or_path and args.train.colocate_critic_reward:` makes
            # a second placement group of whole GPUs for critic and reward, even under colocate_all.
            own = self.has_critic and bool(self["train.colocate_critic_reward"])
            shared = roles + ([] if own else second)
            out = {"colocated": tuple(shared) + (("vllm",) if self.placement == "colocated" else ())}
            if own:
                out["+".join(second)] = tuple(second)
            if self.placement == "async":
                out["vllm"] = ("vllm",)
            return out
        out = {"vllm": ("vllm",)} if self.engines else {}
        if self["train.colocate_actor_ref"]:
            out["actor+ref" if self.has_ref else "actor"] = tuple(roles)
        else:
            out.update({r: (r,) for r in roles})
        if self["train.colocate_critic_reward"] and len(second) == 2:
            out["critic+reward"] = tuple(second)
        else:
            out.update({r: (r,) for r in second})
        return out

    def group_gpus(self, group: str) -> int:
        roles = self.groups()[group]
        return self.vllm_gpus if roles == ("vllm",) else self.gpus_of(roles[0])

    @cached_property
    def gpus_used(self) -> int:
        return sum(self.group_gpus(g) for g in self.groups())

    def flags(self) -> dict[str, Any]:
        """Modelled flags that differ from the parser's defaults, in the spec's order."""
        defaults = openrlhf_spec().defaults
        return {k: v for k, v in self.values.items() if defaults.get(k) != v}


def make_plan(
    values: Mapping[str, Any] | None = None, job: OpenRLHFJob | None = None, kept: tuple[str, ...] = ()
) -> OpenRLHFPlan:
    merged = dict(openrlhf_spec().defaults)
    for flag, value in (values or {}).items():
        if flag not in merged:
            raise UserInputError(f"{flag} is not a modelled OpenRLHF flag")
        merged[flag] = value
    return OpenRLHFPlan(MappingProxyType(merged), job or OpenRLHFJob(), kept)


def parse_value(flag: str, text: str) -> Any:
    """A --set value typed as the flag's default is (flags defaulting to None take ints)."""
    default = openrlhf_spec().defaults[flag]
    lowered = text.strip().lower()
    try:
        if isinstance(default, bool):
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError
        if isinstance(default, float):
            return float(text)
        if isinstance(default, str):
            return text.strip()
        if lowered in ("none", "null", ""):
            return None
        return int(text)
    except ValueError:
        raise UserInputError(f"{flag}={text}: not a valid value (default {default!r})") from None
