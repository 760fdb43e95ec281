"""The framework registry: DeepSpeed-Chat first and default, OpenRLHF naming its cost and export by path."""

from __future__ import annotations

import pytest

from dstune.errors import UserInputError
from dstune.frameworks import DEFAULT_FRAMEWORK, framework_names, framework_strategy
from dstune.frameworks.openrlhf._cost import estimate_openrlhf
from dstune.frameworks.openrlhf._export import launch_script


def test_names_and_default() -> None:
    assert framework_names()[0] == DEFAULT_FRAMEWORK == "deepspeed-chat"
    assert "openrlhf" in framework_names()
    with pytest.raises(UserInputError, match="unknown framework 'verl'"):
        framework_strategy("verl")


def test_openrlhf_names_its_upper_layers_by_path() -> None:
    openrlhf = framework_strategy("openrlhf")
    assert openrlhf.cost() is estimate_openrlhf
    assert openrlhf.exporter() is launch_script
    with pytest.raises(TypeError):
        framework_strategy("deepspeed-chat").cost()


def test_knob_names_do_not_overlap() -> None:
    dschat, openrlhf = (framework_strategy(n).knob_names() for n in ("deepspeed-chat", "openrlhf"))
    assert "actor_zero_stage" in dschat and "ds.zero_stage" in openrlhf
    assert not dschat & openrlhf
