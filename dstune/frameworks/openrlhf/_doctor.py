"""What doctor says about the target frameworks: the installed OpenRLHF, vLLM and Ray versions against
the supported OpenRLHF release and its pins, and the OpenRLHF known issues that apply here."""

from __future__ import annotations

from importlib import resources

import yaml
from packaging.version import InvalidVersion, Version

from ...doctor import package_version
from ._spec import openrlhf_spec

FRAMEWORK_PACKAGES = ("openrlhf", "vllm", "ray")


def _below_or_equal(installed: str, bound: str) -> bool:
    try:
        return Version(installed) <= Version(bound)
    except InvalidVersion:
        return False


def framework_findings(versions: dict[str, str | None]) -> list[tuple[str, str, str]]:
    """(topic, level, consequence) per finding; doctor's report turns them into its Findings."""
    spec = openrlhf_spec()
    supported = ", ".join(spec.supported_versions)
    openrlhf = versions.get("openrlhf")
    if openrlhf is None:
        return [
            (
                "OpenRLHF",
                "info",
                f"OpenRLHF not installed: --framework openrlhf plans for {supported} "
                f"(vLLM {spec.pins['vllm']}, Ray {spec.pins['ray']}, DeepSpeed {spec.pins['deepspeed']})",
            )
        ]
    found = []
    if openrlhf in spec.supported_versions:
        found.append(("OpenRLHF", "ok", f"OpenRLHF {openrlhf}: supported"))
    else:
        found.append(
            (
                "OpenRLHF",
                "warn",
                f"OpenRLHF {openrlhf} is not a supported version ({supported}): its flags "
                "and checks may differ from the ones dstune's plans and launch scripts use",
            )
        )
    for package in ("vllm", "ray", "deepspeed"):
        have, pinned = versions.get(package) or package_version(package), spec.pins[package]
        if have != pinned:
            found.append(
                (
                    package,
                    "warn",
                    f"{package} {have or 'not installed'}; OpenRLHF {supported} pins {pinned}: "
                    "the cost model's vLLM and DeepSpeed facts are read for the pinned versions",
                )
            )
    raw = yaml.safe_load(
        resources.files("dstune.frameworks.openrlhf").joinpath("data/known_issues.yaml").read_text(encoding="utf-8")
    )
    for issue in raw:
        when = issue.get("when")
        if when:
            have = versions.get(when["package"]) or package_version(when["package"])
            if not have or not _below_or_equal(have, when["below_or_equal"]):
                continue
        found.append((f"known issue {issue['id']}", issue["level"], issue["consequence"]))
    return found
