import dataclasses
import sys
import types

import pytest

from dstune.catalog import (
    DEFAULT_GPU_TYPE,
    DetectedGpu,
    _gpus,
    detect_local_gpus,
    list_gpus,
    load_gpu,
    resolve_gpu_type,
)
from dstune.errors import UserInputError

REQUIRED = {"A100-40G", "A100-80G", "H100-80G", "H200", "A10G", "L40S", "V100-32G", "A6000", "RTX-4090"}


def test_catalog_has_required_gpus():
    assert REQUIRED <= {gpu.name for gpu in list_gpus()}


@pytest.mark.parametrize("gpu", list_gpus(), ids=lambda gpu: gpu.name)
def test_every_entry_has_positive_numbers(gpu):
    for field in dataclasses.fields(gpu):
        value = getattr(gpu, field.name)
        if isinstance(value, (int, float)) and field.name != "bf16_dense_tflops":
            assert value > 0, field.name
    assert gpu.bf16_dense_tflops is None or gpu.bf16_dense_tflops > 0
    assert gpu.intra_node_link in ("nvlink", "pcie")
    assert 1 <= gpu.default_gpus_per_node <= 16
    assert gpu.nvml_names and gpu.source
    assert gpu.memory_bytes == int(gpu.memory_in_GiB * 1024**3)


def test_names_and_aliases_are_unique():
    keys = [key.lower() for gpu in list_gpus() for key in (gpu.name, *gpu.aliases)]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(
    "query, name",
    [
        ("a100-80", "A100-80G"),
        ("A100-80G", "A100-80G"),
        ("a100-40g", "A100-40G"),
        ("H100", "H100-80G"),
        ("h100-sxm", "H100-80G"),
        ("h200", "H200"),
        ("V100", "V100-32G"),
        ("rtx-4090", "RTX-4090"),
    ],
)
def test_lookup_by_name_or_alias(query, name):
    assert load_gpu(query).name == name


@pytest.mark.parametrize("query", ["A100", "a100", "A100-"])
def test_a_prefix_of_several_gpus_is_refused_with_the_candidates(query):
    with pytest.raises(UserInputError, match="ambiguous GPU type .*A100-40G, A100-80G"):
        load_gpu(query)


def test_datasheet_figures():
    a100 = load_gpu("A100-80G")
    assert (a100.memory_in_GiB, a100.peak_tflops("bf16"), a100.intra_node_link_in_GB_per_sec) == (80, 312, 300)
    h100 = load_gpu("H100-80G")
    assert h100.peak_tflops("torch.bfloat16") == pytest.approx(989, rel=0.01)
    assert load_gpu("H200").memory_in_GiB > h100.memory_in_GiB


def test_bf16_on_v100_is_refused():
    v100 = load_gpu("V100-32G")
    assert v100.peak_tflops("fp16") == 125
    with pytest.raises(UserInputError, match=r"^V100-32G has no bf16 tensor cores; use --set dtype=fp16$"):
        v100.peak_tflops("bf16")


def test_unknown_dtype():
    with pytest.raises(UserInputError, match="unknown dtype 'fp8'"):
        load_gpu("H100").peak_tflops("fp8")


def test_unknown_gpu_names_close_matches():
    with pytest.raises(UserInputError, match=r"^unknown GPU type 'H20'; close matches: H200"):
        load_gpu("H20")
    with pytest.raises(UserInputError, match="known: A100-40G, A100-80G"):
        load_gpu("mi300x")


@pytest.mark.parametrize(
    "nvml_name, name",
    [
        ("NVIDIA A100-SXM4-80GB", "A100-80G"),
        ("NVIDIA A100 80GB PCIe", "A100-80G"),
        ("NVIDIA A100-SXM4-40GB", "A100-40G"),
        ("NVIDIA H100 80GB HBM3", "H100-80G"),
        ("NVIDIA H100 PCIe", "H100-PCIe"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA L40S", "L40S"),
        ("Tesla V100-SXM2-32GB", "V100-32G"),
        ("NVIDIA RTX A6000", "A6000"),
        ("NVIDIA GeForce RTX 4090", "RTX-4090"),
        ("NVIDIA L4", None),
    ],
)
def test_nvml_names_match(nvml_name, name):
    spec = _gpus.match_nvml_name(nvml_name)
    assert (spec.name if spec else None) == name


def test_detect_local_gpus_returns_records():
    gpus = detect_local_gpus()
    assert isinstance(gpus, list) and all(isinstance(gpu, DetectedGpu) for gpu in gpus)


def test_no_gpu_falls_back_to_default(monkeypatch):
    monkeypatch.setattr(_gpus, "detect_local_gpus", lambda: [])
    spec, note = resolve_gpu_type("auto")
    assert spec.name == DEFAULT_GPU_TYPE == "A100-80G"
    assert note == "no local GPU detected; assuming A100-80G (choose with --gpu-type)"


def test_explicit_gpu_type_skips_detection(monkeypatch):
    monkeypatch.setattr(_gpus, "detect_local_gpus", lambda: pytest.fail("detected"))
    spec, note = resolve_gpu_type("h100")
    assert spec.name == "H100-80G" and "H100-80G" in note


def _fake_pynvml(names_and_bytes, fail_init=False):
    class NVMLError(Exception):
        pass

    def init():
        if fail_init:
            raise NVMLError("Driver Not Loaded")

    module = types.ModuleType("pynvml")
    module.NVMLError = NVMLError
    module.nvmlInit = init
    module.nvmlShutdown = lambda: None
    module.nvmlDeviceGetCount = lambda: len(names_and_bytes)
    module.nvmlDeviceGetHandleByIndex = lambda index: index
    module.nvmlDeviceGetName = lambda index: names_and_bytes[index][0]
    module.nvmlDeviceGetMemoryInfo = lambda index: types.SimpleNamespace(total=names_and_bytes[index][1])
    return module


def test_detection_through_nvml(monkeypatch):
    devices = [("NVIDIA A100-SXM4-80GB", 80 * 1024**3)] * 8
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(devices))
    found = detect_local_gpus()
    assert [gpu.index for gpu in found] == list(range(8))
    assert found[0].spec.name == "A100-80G" and found[0].memory_bytes == 80 * 1024**3
    spec, note = resolve_gpu_type()
    assert (spec.name, note) == ("A100-80G", "detected 8 x NVIDIA A100-SXM4-80GB (A100-80G)")


def test_unknown_local_gpu_uses_closest_by_memory(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml([(b"NVIDIA L4", int(22.0 * 1024**3))]))
    spec, note = resolve_gpu_type("auto")
    assert spec.name == "A10G"
    assert note.startswith("detected 1 x NVIDIA L4, not in the catalog; assuming A10G, the closest by memory")


def test_nvml_failure_means_no_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml([], fail_init=True))
    assert detect_local_gpus() == []
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert detect_local_gpus() == []
