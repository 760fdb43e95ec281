"""Space files: loading, errors that name the file and key, grid enumeration and rule filtering."""

from pathlib import Path

import numpy as np
import pytest

from dstune.catalog import load_model
from dstune.errors import UserInputError
from dstune.plan import Context, make_plan, violations
from dstune.search import SPACES_DIR, build_grid, load_space
from dstune.search._grid import rule_knobs


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["ppo", "sft", "rm", "tiny-ppo", "tiny-ppo-table", "tiny-sft", "tiny-rm"])
def test_shipped_spaces_load_and_have_valid_plans(name):
    space = load_space(SPACES_DIR / f"{name}.yaml")
    model = load_model("tiny-opt" if name.startswith("tiny") else "opt-1.3b")
    critic = load_model("tiny-opt" if name.startswith("tiny") else "opt-350m") if space.step == "ppo" else None
    grid = build_grid(
        space, Context(world_size=8 if not name.startswith("tiny") else 2, model=model, critic_model=critic)
    )
    assert len(grid) > 10
    for row in np.random.default_rng(0).choice(len(grid), 20):
        assert (
            violations(
                grid.plan(int(row)),
                Context(world_size=8 if not name.startswith("tiny") else 2, model=model, critic_model=critic),
            )
            == []
        )


def test_unknown_knob_names_file_and_key(tmp_path):
    path = _write(tmp_path, "step: ppo\nknobs:\n  actor_zero_stag: [2, 3]\n")
    with pytest.raises(UserInputError, match=r"space\.yaml.*knobs\.actor_zero_stag.*actor_zero_stage"):
        load_space(path)


def test_bad_value_names_file_and_key(tmp_path):
    path = _write(tmp_path, "step: ppo\nknobs:\n  actor_zero_stage: [2, 5]\n")
    with pytest.raises(UserInputError, match=r"space\.yaml.*knobs\.actor_zero_stage\[1\]"):
        load_space(path)


@pytest.mark.parametrize(
    "text, key",
    [
        ("step: ppo\nbogus: 1\n", "bogus"),
        ("step: ppo\nbatch:\n  policy: whatever\n", "batch.policy"),
        ("step: sft\nbatch:\n  policy: fixed_global_batch\n", "batch.global_batch"),
        ("step: ppo\nworkload:\n  dtype: fp8\n", "workload.dtype"),
        ("step: ppo\nties:\n  per_device_training_batch_size: nope\n", "ties.per_device_training_batch_size"),
        ("step: [\n", "not valid YAML"),
    ],
)
def test_structural_errors(tmp_path, text, key):
    with pytest.raises(UserInputError, match=key.replace("[", r"\[").replace(".", r"\.")):
        load_space(_write(tmp_path, text))


def test_missing_file_and_step_mismatch(tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        load_space(tmp_path / "none.yaml")
    with pytest.raises(UserInputError, match="--step"):
        load_space(SPACES_DIR / "sft.yaml", "ppo")


def test_space_where_every_plan_breaks_rules(tmp_path):
    path = _write(
        tmp_path,
        "step: ppo\nbatch: {policy: token_cap}\nknobs:\n  actor_zero_stage: [1, 2]\n  enable_hybrid_engine: [true]\n"
        "  inference_tp_size: [2, 4]\n",
    )
    space = load_space(path)
    with pytest.raises(UserInputError, match=r"none of its 4 plans.*tp_needs_zero3"):
        build_grid(space, Context(world_size=8, model=load_model("opt-1.3b"), critic_model=load_model("opt-350m")))


def test_rule_cache_matches_brute_force(tmp_path):
    """Rules are evaluated once per combination of the knobs they read; the result must equal
    checking every candidate plan on its own."""
    path = _write(
        tmp_path,
        "step: ppo\nbatch: {policy: token_cap}\nknobs:\n  actor_zero_stage: [0, 2, 3]\n  critic_zero_stage: [0, 2]\n"
        "  offload: [false, true]\n  actor_lora_dim: [0, 8]\n  only_optimize_lora: [false, true]\n"
        "  enable_hybrid_engine: [false, true]\n  inference_tp_size: [1, 2, 3]\n"
        "  actor_gradient_checkpointing: [false, true]\n"
        "  per_device_generation_batch_size: [1, 4]\n",
    )
    space = load_space(path)
    ctx = Context(world_size=4, model=load_model("opt-125m"), critic_model=load_model("opt-125m"))
    grid = build_grid(space, ctx)
    assert "offload" in rule_knobs("ppo") and "actor_gradient_checkpointing" not in rule_knobs("ppo")
    import itertools

    names = list(space.knobs)
    brute = set()
    for combo in itertools.product(*space.knobs.values()):
        plan = make_plan("ppo", dict(zip(names, combo)))
        if not violations(plan, ctx):
            brute.add(combo)
    got = {tuple(grid.values(i)[n] for n in names) for i in range(len(grid))}
    assert got == brute


def test_fixed_global_batch_derives_accumulation(tmp_path):
    path = _write(
        tmp_path,
        "step: sft\nbatch:\n  policy: fixed_global_batch\n  global_batch: 64\n"
        "knobs:\n  per_device_train_batch_size: [1, 2, 4, 8, 16, 32]\n",
    )
    grid = build_grid(load_space(path), Context(world_size=8, model=load_model("opt-125m")))
    micro = grid.columns["per_device_train_batch_size"]
    assert set(micro) == {1, 2, 4, 8}
    assert np.all(micro * grid.columns["gradient_accumulation_steps"] * 8 == 64)
    assert grid.dropped["batch policy"] == 2


def test_token_cap_limits_batch(tmp_path):
    path = _write(
        tmp_path, "step: ppo\nbatch:\n  max_tokens: 4096\nknobs:\n  per_device_generation_batch_size: [1, 2, 4, 8]\n"
    )
    grid = build_grid(
        load_space(path), Context(world_size=2, model=load_model("opt-125m"), critic_model=load_model("opt-125m"))
    )
    assert set(grid.columns["per_device_generation_batch_size"]) == {1, 2, 4, 8} - {8}


def test_set_pins_a_knob():
    space = load_space(SPACES_DIR / "ppo.yaml").with_fixed({"actor_zero_stage": "3"})
    assert "actor_zero_stage" not in space.knobs and space.fixed["actor_zero_stage"] == 3
    assert "actor_zero_stage" not in space.workload
    with pytest.raises(UserInputError, match="unknown ppo knob"):
        load_space(SPACES_DIR / "ppo.yaml").with_fixed({"nonsense": 1})
