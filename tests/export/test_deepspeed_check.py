"""The export's configs are checked by DeepSpeedConfig in a checker process started early, or here."""

import pytest

from dstune.export import ConfigRejected, _deepspeed_check, role_configs, start_checker, stop_checker
from dstune.plan import make_plan, to_deepspeed

PLAN = make_plan("ppo", {"actor_zero_stage": 3, "critic_zero_stage": 2, "per_device_training_batch_size": 4})


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DSTUNE_CACHE_DIR", str(tmp_path / "cache"))


def _no_check_here(*_args):
    raise AssertionError("checked in this process although the checker answered")


def test_checker_process_runs_deepspeeds_config_class(monkeypatch):
    monkeypatch.setattr(_deepspeed_check, "validate_config", _no_check_here)
    start_checker()
    assert set(role_configs(PLAN, 8)) == {
        "ds_config_actor.json",
        "ds_config_critic.json",
        "ds_config_ref.json",
        "ds_config_reward.json",
    }
    start_checker()
    broken = dict(to_deepspeed(PLAN, 8)["actor"], zero_optimization={"stage": "three"})
    with pytest.raises(ConfigRejected, match="DeepSpeed rejected"):
        _deepspeed_check.check_configs([(broken, 8)])
    assert _deepspeed_check._checker is None


def test_dead_checker_falls_back_to_this_process():
    start_checker()
    proc = _deepspeed_check._checker
    proc.kill()
    proc.wait()
    broken = dict(to_deepspeed(PLAN, 8)["actor"], zero_optimization={"stage": "three"})
    with pytest.raises(ConfigRejected, match="DeepSpeed rejected"):
        _deepspeed_check.check_configs([(broken, 8)])


def test_unasked_checker_is_ended():
    start_checker()
    proc = _deepspeed_check._checker
    stop_checker()
    assert proc.poll() is not None and _deepspeed_check._checker is None


def test_accepted_configs_are_not_checked_twice_on_one_stack(monkeypatch):
    items = [(config, 8) for config in to_deepspeed(PLAN, 8).values()]
    _deepspeed_check.check_configs(items)  # checked here by DeepSpeedConfig, then remembered
    monkeypatch.setattr(_deepspeed_check, "validate_config", _no_check_here)
    start_checker()
    proc = _deepspeed_check._checker
    _deepspeed_check.check_configs(items)
    assert proc.poll() is not None and _deepspeed_check._checker is None  # the unneeded checker was ended
    changed = [(dict(items[0][0], steps_per_print=11), 8)]
    with pytest.raises(AssertionError, match="checked in this process"):
        _deepspeed_check.check_configs(changed)
    monkeypatch.setattr(_deepspeed_check, "STACK", ("deepspeed", "pydantic", "torch", "numpy"))
    with pytest.raises(AssertionError, match="checked in this process"):
        _deepspeed_check.check_configs(items)  # another stack judges again
