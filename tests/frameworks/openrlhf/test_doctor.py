"""doctor's framework findings: OpenRLHF, vLLM and Ray versions against the supported release and its pins."""

from __future__ import annotations

from dstune.frameworks import get_framework
from dstune.frameworks.openrlhf._doctor import framework_findings


def _topics(found: list[tuple[str, str, str]]) -> dict[str, tuple[str, str]]:
    return {topic: (level, text) for topic, level, text in found}


def test_versions_are_read_from_metadata() -> None:
    assert set(get_framework("openrlhf").versions()) == {"openrlhf", "vllm", "ray"}


def test_absent_openrlhf_says_what_plans_target() -> None:
    found = _topics(framework_findings({"openrlhf": None}))
    assert found["OpenRLHF"][0] == "info" and "0.11.2" in found["OpenRLHF"][1]


def test_supported_release_with_its_pins_is_ok() -> None:
    found = _topics(
        framework_findings({"openrlhf": "0.11.2", "vllm": "0.29.0", "ray": "2.55.0", "deepspeed": "0.19.6"})
    )
    assert found["OpenRLHF"][0] == "ok"
    assert "vllm" not in found and "ray" not in found and "deepspeed" not in found
    assert "known issue zero2-sleep-keeps-weights" in found
    assert "known issue ds-sleep-below-zero3" not in found
    assert (
        found["known issue lora-vllm-weight-sync"][0] == "warn"
        and "OpenRLHF#1349" in found["known issue lora-vllm-weight-sync"][1]
    )


def test_other_release_and_old_deepspeed_are_named() -> None:
    found = _topics(framework_findings({"openrlhf": "0.9.8", "vllm": "0.26.0", "ray": "2.55.0", "deepspeed": "0.17.5"}))
    assert found["OpenRLHF"][0] == "warn" and "not a supported version" in found["OpenRLHF"][1]
    assert found["vllm"][0] == "warn" and "pins 0.29.0" in found["vllm"][1]
    assert found["known issue ds-sleep-below-zero3"][0] == "warn"


def test_lora_with_vllm_engines_is_named_as_known_broken() -> None:
    from dstune.frameworks.openrlhf import make_plan, plan_known_issues

    lora = make_plan({"ds.lora.rank": 16, "vllm.num_engines": 8})
    assert [i.split(":")[0] for i in plan_known_issues(lora)] == ["known issue lora-vllm-weight-sync"]
    assert plan_known_issues(lora.with_flags({"ds.lora.rank": 0})) == []
    assert plan_known_issues(lora.with_flags({"vllm.num_engines": None})) == []  # no vLLM, no weight sync
