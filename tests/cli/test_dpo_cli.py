"""DPO through the CLI: estimate, search (simulate) and its files, the way a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dstune.cli import main
from dstune.export import validate_config


def test_estimate_dpo_json_has_the_reference_phase(capsys) -> None:
    code = main(["estimate", "--model", "opt-1.3b", "--gpus", "8", "--gpu-type", "A100-80G", "--step", "dpo", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    phases = out["time"]["phases"]
    assert list(phases) == ["forward", "reference", "backward", "step"] and all(v > 0 for v in phases.values())
    assert out["step"] == "dpo" and sum(phases.values()) == pytest.approx(out["time"]["step_s"])


def test_search_dpo_writes_configs_deepspeed_accepts_and_the_step2_dpo_script(tmp_path: Path) -> None:
    out = tmp_path / "dpo"
    argv = ["search", "--model", "opt-1.3b", "--gpus", "8", "--gpu-type", "A100-80G", "--step", "dpo"]
    assert main([*argv, "--out", str(out), "--trials", "12", "--seed", "0"]) == 0
    assert {"ds_config.json", "ds_config_ref.json", "run_step2_dpo.sh", "plan.json", "trials.csv"} <= {
        p.name for p in out.iterdir()
    }
    for name in ("ds_config.json", "ds_config_ref.json"):
        validate_config(json.loads((out / name).read_text()), world_size=8)
    meta = json.loads((out / "plan.json").read_text())
    assert meta["step"] == "dpo"
    assert meta["baseline"]["script"].endswith("step2_dpo_finetuning/training_scripts/opt/single_node/run_350m.sh")
    assert "pairs/step" in meta["job"]["label"]
    script = (out / "run_step2_dpo.sh").read_text()
    assert "main.py" in script and "--deepspeed" in script


def test_unknown_step_is_one_line_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["estimate", "--model", "opt-1.3b", "--gpus", "8", "--step", "kto"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid choice: 'kto'" in err[0] and "dpo" in err[0]
