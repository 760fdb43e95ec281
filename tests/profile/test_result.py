"""TrialResult is a typed record with a JSON round trip and the estimate --json layout."""

from __future__ import annotations

import json

from dstune.profile import TrialResult
from dstune.record import Status


def _result(**overrides) -> TrialResult:
    values = dict(
        status=Status.OK,
        world_size=2,
        device="cpu",
        phases={"forward": 0.1, "backward": 0.2, "step": 0.05},
        step_s=0.35,
        samples_per_s=11.4,
        tokens_per_s=274.0,
        samples_per_step=4,
        tokens_per_step=96,
        host_peak_bytes=10**9,
        versions={"deepspeed": "0.19.8"},
        step_times=(0.34, 0.36),
        notes=("n",),
        wall_s=30.0,
        trial_dir="/tmp/x",
    )
    values.update(overrides)
    return TrialResult(**values)


def test_json_round_trip_is_exact() -> None:
    result = _result()
    text = json.dumps(result.to_dict())
    assert TrialResult.from_json(text) == result
    assert TrialResult.from_json(text).status is Status.OK


def test_cli_json_has_estimate_keys_and_failures_carry_the_log_tail() -> None:
    payload = _result().to_json(None)
    assert {
        "memory",
        "time",
        "throughput",
        "mfu",
        "status",
        "world_size",
        "he_kernels",
        "versions",
        "predicted",
    } <= set(payload)
    assert payload["memory"]["host_peak_bytes"] == 10**9 and payload["time"]["phases"]["step"] == 0.05
    assert "log_tail" not in payload
    failed = _result(status=Status.ERROR, error="ValueError: x", log_tail="tail").to_json(None)
    assert failed["status"] == "error" and failed["log_tail"] == "tail" and failed["error"] == "ValueError: x"


def test_worker_classifies_the_allocators_out_of_memory_error_as_oom() -> None:
    import torch

    from dstune.profile.worker import _failure

    try:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    except torch.OutOfMemoryError as error:
        assert _failure(error)["status"] == "oom"
    try:
        raise ValueError("embed_dim must be divisible by num_heads")
    except ValueError as error:
        failure = _failure(error)
    assert failure["status"] == "error" and "ValueError: embed_dim" in failure["error"]
