"""Each profiled trial records the doctor's findings: the versions and the HE probe of its family."""

from __future__ import annotations

from dstune.profile import TrialResult
from dstune.profile.worker import _doctor_findings
from dstune.record import Status


def test_worker_records_versions_and_never_probes_without_a_cache(cache_dir) -> None:
    """A trial reads the doctor's cache only (issue 26): probing would build a real HE engine inside the trial's
    timeout and add to its measured peak. Without a cached verdict it says so instead."""
    versions, probe = _doctor_findings({"model": {"name": "tiny-llama", "hf_config": {"model_type": "llama"}}})
    assert {"python", "torch", "deepspeed", "transformers"} <= set(versions)
    assert all(isinstance(v, str) for v in versions.values())
    assert probe["family"] == "llama" and probe["policy_found"] is None and probe["source"] == "none"
    assert "not probed in the trial" in probe["reason"]


def test_trial_result_keeps_the_probe_in_its_json() -> None:
    probe = {"family": "opt", "policy_found": False, "reason": "r", "source": "cache"}
    result = TrialResult(status=Status.OK, world_size=1, device="cpu", he_probe=probe)
    again = TrialResult.from_dict(result.to_dict())
    assert again.he_probe == probe and result.to_json()["he_probe"] == probe
