"""The search planner: what the user asked -> backend, trial counts, names, memory cap, dtype, on real specs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dstune.calibration import DATA_DIR
from dstune.catalog import Setup, detect_local_gpus, load_gpu, resolve_setup
from dstune.costmodel import DEFAULT_CONSTANTS, estimate
from dstune.errors import UserInputError
from dstune.plan import make_plan
from dstune.search import SPACES_DIR, ProfileBackend, SearchOptions, SimulateBackend, plan_search
from dstune.search._planner import SIMULATED_NOTE

TABLE = DATA_DIR / "tiny-opt-ppo-2xcpu-150.csv"


def _options(**changes: object) -> SearchOptions:
    base = SearchOptions(model="opt-6.7b", gpus=8, gpu_type="A100-80G", out=Path("out"))
    return dataclasses.replace(base, **changes)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_auto_simulates_without_the_gpus_and_says_so() -> None:
    if any(g.spec is not None and g.spec.name == "A100-80G" for g in detect_local_gpus()):
        pytest.skip("this machine has A100-80G GPUs: auto would profile")
    prepared = plan_search(_options(out=None))
    req = prepared.request
    assert isinstance(req.backend, SimulateBackend) and prepared.backend_note == SIMULATED_NOTE
    assert req.trials == prepared.trials == 40
    assert prepared.out == Path("reports/opt-6.7b-8xA100-80G-ppo")
    assert req.study_name == "opt-6.7b-8xA100-80G-ppo-simulate"
    assert req.storage == f"sqlite:///{prepared.out.resolve()}/study.db"
    assert prepared.storage_shown == "sqlite:///reports/opt-6.7b-8xA100-80G-ppo/study.db"
    assert prepared.hardware == "A100-80G" and prepared.hardware_label == "8 x A100-80G"
    assert req.setup.critic_model is not None and req.setup.critic_model.name == "opt-350m"


def test_memory_cap_has_one_definition_the_cost_model_and_the_search_share() -> None:
    capacity = load_gpu("A100-80G").memory_bytes
    default = plan_search(_options()).request
    assert default.headroom == DEFAULT_CONSTANTS.headroom_fraction
    assert default.cap_bytes == pytest.approx(capacity * (1 - DEFAULT_CONSTANTS.headroom_fraction))

    req = plan_search(_options(headroom=0.25)).request
    assert req.prior.headroom_fraction == req.headroom == 0.25
    assert req.cap_bytes == pytest.approx(capacity * 0.75) == req.backend.cap_bytes


def test_the_cost_models_verdict_uses_the_searchs_headroom() -> None:
    """A plan peaking between the search's cap and the card is 'feasible, inside the headroom' for both."""
    first = plan_search(_options(model="opt-1.3b")).request
    setup, plan = first.setup, make_plan("ppo", {})
    peak = estimate(plan, setup.model, setup.cluster, critic_model=setup.critic_model, constants=first.prior)
    capacity = setup.cluster.gpu.memory_bytes
    assert peak.gpu_peak_bytes < capacity
    headroom = 1 - 0.9 * peak.gpu_peak_bytes / capacity
    req = plan_search(_options(model="opt-1.3b", headroom=headroom)).request
    again = estimate(plan, setup.model, setup.cluster, critic_model=setup.critic_model, constants=req.prior)
    assert req.cap_bytes < again.gpu_peak_bytes < capacity
    assert again.feasible and any("headroom" in w for w in again.warnings)


def test_replay_defaults_to_40_trials_on_the_tables_hardware() -> None:
    prepared = plan_search(_options(model="tiny-opt", gpus=2, backend="replay", table=TABLE, out=None))
    req = prepared.request
    assert req.backend.name == "replay" and req.trials == 40
    assert prepared.hardware == "cpu" and prepared.hardware_label == "2 x cpu (DeepSpeed CPU accelerator)"
    assert req.study_name == "tiny-opt-2xcpu-ppo-replay" and prepared.out == Path("reports/tiny-opt-2xcpu-ppo")
    assert prepared.backend_note == f"replay: figures are measurements recorded in {TABLE}"
    assert req.shipped == ()


def test_profile_on_the_cpu_accelerator_runs_12_trials_in_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    prepared = plan_search(_options(model="opt-125m", gpus=2, backend="profile", out=None))
    req = prepared.request
    assert isinstance(req.backend, ProfileBackend) and req.backend.device == "cpu"
    assert req.trials == 12 and prepared.backend_note.startswith("profiled on the CPU")
    assert req.study_name == "opt-125m-2xcpu-ppo-profile"
    assert req.backend.trials_dir == prepared.out / "trials"
    assert req.space.fixed["dtype"] == "bf16"
    assert prepared.notes[0].startswith("CPU accelerator: dtype fp16 -> bf16")
    assert req.shipped, "the shipped CPU rows give the surrogate a head start"

    pinned = plan_search(_options(model="opt-125m", gpus=2, backend="profile", assignments=("dtype=fp16",)))
    assert pinned.request.space.fixed["dtype"] == "fp16"
    assert not any("bf16" in note for note in pinned.notes)


def test_workers_share_the_trials() -> None:
    prepared = plan_search(_options(model="tiny-opt", gpus=2, backend="replay", table=TABLE, trials=10, workers=3))
    assert prepared.trials == 10 and prepared.workers == 3 and prepared.request.trials == 4


def test_a_step_without_critic_or_hybrid_engine_has_neither() -> None:
    prepared = plan_search(_options(model="opt-1.3b", step="sft"))
    assert prepared.setup.critic_model is None
    assert prepared.request.he_kernels is True and prepared.notes == ()
    assert prepared.request.study_name == "opt-1.3b-8xA100-80G-sft-simulate"


def test_he_kernel_choice_reaches_the_predictions() -> None:
    prepared = plan_search(_options(he_kernels="no"))
    assert prepared.request.he_kernels is False and prepared.request.backend.he_kernels is False
    assert prepared.notes == ("predictions: Hybrid Engine generation without its inference kernels (--he-kernels no)",)


def test_the_spaces_critic_unless_one_is_named(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("critic_model: opt-125m\n" + (SPACES_DIR / "ppo.yaml").read_text())
    assert plan_search(_options(space=space)).setup.critic_model.name == "opt-125m"
    named = plan_search(_options(space=space, critic_model="opt-1.3b")).setup
    assert named.critic_model.name == "opt-1.3b"


def test_explicit_names_win() -> None:
    prepared = plan_search(_options(study_name="mine", storage="sqlite:///x.db", trials=3))
    assert prepared.request.study_name == "mine" and prepared.request.trials == 3
    assert prepared.request.storage == prepared.storage_shown == "sqlite:///x.db"


@pytest.mark.parametrize(
    "changes, flag",
    [
        ({"backend": "replay"}, "--table"),
        ({"backend": "nope"}, "--backend"),
        ({"headroom": 1.0}, "--headroom"),
        ({"tie_tolerance": 0.5}, "--tie-tolerance"),
        ({"heartbeat_s": 0}, "--heartbeat"),
        ({"explore": ("lora", "sideways")}, "--explore sideways"),
        ({"trials": 0}, "--trials"),
        ({"workers": 2}, "--workers 2 needs --backend profile or replay"),
        ({"known_issues": "ignore"}, "--known-issues"),
    ],
)
def test_what_cannot_run_is_a_user_error_naming_the_flag(changes: dict, flag: str) -> None:
    with pytest.raises(UserInputError, match=flag):
        plan_search(_options(**changes))


def test_one_setup_for_the_cli_and_the_search() -> None:
    import dstune.search

    assert dstune.search.Setup is Setup
    setup = resolve_setup(step="ppo", model="opt-6.7b", gpus=8, with_critic=True, gpu_type="A100-80G")
    assert setup.critic_model.name == "opt-350m" and setup.gpu_note == "using A100-80G (--gpu-type)"
    assert resolve_setup(step="sft", model="opt-6.7b", gpus=8, with_critic=False).critic_model is None
