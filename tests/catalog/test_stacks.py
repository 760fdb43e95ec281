"""Target stacks: the named ones agree with the files they cite, and a cluster's file becomes a Stack as it is."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from dstune.catalog import Stack, named_stack, named_stacks, reference_stack, stack_from_file
from dstune.errors import UserInputError
from dstune.plan import Context, make_plan, violations

ROOT = Path(__file__).resolve().parents[2]


def _pins(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        for op in ("==", ">=", "<"):
            if op in line:
                name = line.split(op, 1)[0].strip()
                found[name.lower().replace("-", "_")] = line[len(name) :].strip()
                break
    return found


def test_he_stack_pins_what_constraints_he_txt_pins() -> None:
    pins = _pins((ROOT / "constraints" / "he.txt").read_text(encoding="utf-8"))
    he = named_stack("he")
    assert {p: he.requires[p] for p in pins} == pins
    assert he.version("transformers") == "4.48.3" and he.version("deepspeed") == "0.19.8"
    assert he.he_verdict("opt") == he.he_verdict("llama") == "kernels"


def test_openrlhf_stack_pins_what_its_wheel_requires() -> None:
    wheels = sorted((ROOT / ".wheels").glob("openrlhf-0.11.2-*.whl"))
    if not wheels:
        pytest.skip("no OpenRLHF 0.11.2 wheel in .wheels/")
    with zipfile.ZipFile(wheels[0]) as wheel:
        meta = wheel.read("openrlhf-0.11.2.dist-info/METADATA").decode()
    required = {}
    for line in meta.splitlines():
        if line.startswith("Requires-Dist:"):
            spec = line.split(":", 1)[1].split(";")[0].strip()  # the vllm extra's pin comes before vllm-latest's
            for cut in ("==", ">="):
                if cut in spec:
                    name = spec.split(cut)[0].split("[")[0].strip()
                    required.setdefault(name.lower().replace("-", "_"), spec[spec.index(cut) :])
                    break
    stack = named_stack("openrlhf-0.11.2")
    for package, spec in stack.requires.items():
        if package != "openrlhf":
            assert required[package] == spec, package


def test_dschat_2023_is_deepspeed_0_9_0_and_eager_attention() -> None:
    old = named_stack("dschat-2023")
    assert old.version("deepspeed") == "0.9.0" and old.version("transformers") == "4.28.1"
    assert old.eager_attention is True and named_stack("he").eager_attention is False


def test_reference_stack_is_the_newest_where_the_family_has_kernels() -> None:
    assert reference_stack("deepspeed-chat", "opt").name == "he"
    assert reference_stack("deepspeed-chat", "llama").name == "he"
    assert reference_stack("openrlhf").name == "openrlhf-0.11.2"


def test_unknown_name_is_one_line_naming_the_choices() -> None:
    with pytest.raises(UserInputError) as error:
        named_stack("dschat-2024")
    text = str(error.value)
    assert "\n" not in text and all(s.name in text for s in named_stacks()) and "local" in text


def test_he_tp_rule_reads_the_target_stacks_deepspeed() -> None:
    """dschat-2023 (DeepSpeed 0.9.0) slices HE weights without an mpu; he (0.19.8) does not."""
    from dstune.catalog import load_model

    plan = make_plan("ppo", {"actor_zero_stage": 3, "enable_hybrid_engine": True, "inference_tp_size": 2})
    model, critic = load_model("opt-13b"), load_model("opt-350m")
    old = Context(world_size=8, model=model, critic_model=critic, stack=named_stack("dschat-2023"))
    new = Context(world_size=8, model=model, critic_model=critic, stack=named_stack("he"))
    assert violations(plan, old) == []
    assert [v.split(":")[0] for v in violations(plan, new)] == ["he_tp_cannot_shard"]
    assert "stack he's DeepSpeed 0.19.8" in violations(plan, new)[0]


def test_pip_freeze_takes_verdicts_recorded_for_the_same_versions(tmp_path: Path) -> None:
    freeze = tmp_path / "freeze.txt"
    freeze.write_text(
        "accelerate==1.2.0\ndeepspeed==0.19.8\nhuggingface-hub==0.27.1\n-e git+https://x/dstune.git#egg=dstune\n"
        "tokenizers==0.21.0\ntorch==2.13.0+cu128\ntransformers==4.48.3\n",
        encoding="utf-8",
    )
    stack = stack_from_file(freeze)
    assert stack.requires["huggingface_hub"] == "==0.27.1" and stack.version("torch") == "2.13.0+cu128"
    assert "accelerate" not in stack.requires
    assert stack.he_verdict("opt") == "kernels" and "recorded for he" in stack.verdicts_from


def test_requirements_with_new_versions_has_unknown_verdicts(tmp_path: Path) -> None:
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("deepspeed==0.20.1  # newer\ntransformers>=5.30\n", encoding="utf-8")
    stack = stack_from_file(reqs)
    assert stack.requires == {"deepspeed": "==0.20.1", "transformers": ">=5.30"}
    assert stack.he_verdict("opt") is None and stack.transformers_version is None


def test_a_saved_doctor_json_is_used_as_it_is(tmp_path: Path) -> None:
    saved = tmp_path / "stack.json"
    doctor = {
        "versions": {"deepspeed": "0.19.8", "transformers": "4.48.3", "torch": "2.13.0+cu128", "torch_cuda": "12.8"},
        "hybrid_engine": {"opt": {"verdict": "broken", "policy_found": True}, "llama": {"verdict": "kernels"}},
    }
    saved.write_text(json.dumps(doctor), encoding="utf-8")
    stack = stack_from_file(saved)
    assert stack.he_verdict("opt") == "broken", "the cluster's probe wins over what is recorded for he"
    assert stack.torch_cuda == "12.8" and stack.version("transformers") == "4.48.3"
    assert "probed by dstune doctor" in stack.verdicts_from


@pytest.mark.parametrize(
    "text, says",
    [
        ("numpy==2.0\n", "names neither deepspeed nor transformers"),
        ('{"gpus": []}', "must be `dstune doctor --json` output"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_bad_stack_file_is_one_line(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "stack.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserInputError, match=says) as error:
        stack_from_file(path)
    assert "\n" not in str(error.value)


def test_a_stack_is_hashable_and_labelled() -> None:
    he = named_stack("he")
    assert hash(he) == hash(Stack(name="he", requires=dict(he.requires), he_verdicts=dict(he.he_verdicts)))
    assert he.label == "he (deepspeed 0.19.8, transformers 4.48.3)"
    assert he.requirement_lines()[:2] == ["deepspeed==0.19.8", "transformers==4.48.3"]
