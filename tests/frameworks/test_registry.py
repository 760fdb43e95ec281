"""The framework registry and base: DeepSpeed-Chat first and default, every framework answering the
commands through options classes whose fields generate the flags."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from dstune.errors import UserInputError
from dstune.frameworks import (
    DEFAULT_FRAMEWORK,
    CommandOptions,
    add_flags,
    check_knobs,
    flag_names,
    foreign_option,
    framework_names,
    frameworks,
    get_framework,
    options_from,
)


def test_names_and_default() -> None:
    assert framework_names()[0] == DEFAULT_FRAMEWORK == "deepspeed-chat"
    assert "openrlhf" in framework_names()
    with pytest.raises(UserInputError, match="unknown framework 'verl'"):
        get_framework("verl")


def test_every_framework_has_estimate_and_search_options() -> None:
    for framework in frameworks():
        assert {"estimate", "search"} <= set(framework.options), framework.name
        for options in framework.options.values():
            assert issubclass(options, CommandOptions) and dataclasses.is_dataclass(options)
            assert {"--model", "--gpus", "--json"} <= set(flag_names(options))


def test_flags_round_trip_into_the_typed_options() -> None:
    options = get_framework(DEFAULT_FRAMEWORK).options["search"]
    parser = argparse.ArgumentParser()
    add_flags(parser, options)
    argv = ["--model", "opt-1.3b", "--gpus", "8", "--set", "a=1", "--set", "b=2", "--explore", "lora,batch"]
    parsed = options_from(options, parser.parse_args([*argv, "--heartbeat", "7", "--timeout", "30"]), argv=())
    assert parsed.assignments == ("a=1", "b=2") and parsed.explore == ("lora", "batch")
    assert parsed.heartbeat_s == 7 and parsed.timeout_s == 30.0 and parsed.gpus == 8
    library = parsed.search_options()
    assert library.heartbeat_s == 7 and library.explore == ("lora", "batch")


def test_the_other_frameworks_options_and_knobs_are_named() -> None:
    dschat, openrlhf = get_framework("deepspeed-chat"), get_framework("openrlhf")
    assert "add --framework openrlhf" in (foreign_option(dschat, "search", "--algo") or "")
    assert "--set rollout.batch_size" in (foreign_option(openrlhf, "search", "--global-batch") or "")
    assert foreign_option(dschat, "search", "--no-such-flag") is None
    with pytest.raises(UserInputError, match="ds.zero_stage is an OpenRLHF flag, not a DeepSpeed-Chat knob"):
        check_knobs(dschat, ("ds.zero_stage=3",))
    check_knobs(openrlhf, ("ds.zero_stage=3",))


def test_knob_names_do_not_overlap() -> None:
    dschat, openrlhf = (get_framework(n).knob_names() for n in ("deepspeed-chat", "openrlhf"))
    assert "actor_zero_stage" in dschat and "ds.zero_stage" in openrlhf
    assert not dschat & openrlhf


def test_a_framework_without_a_trial_runner_refuses_profile_in_one_line() -> None:
    with pytest.raises(UserInputError, match="OpenRLHF plans cannot be profiled yet"):
        get_framework("openrlhf").profile(None)
