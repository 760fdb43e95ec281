"""`dstune search` end to end through the CLI, simulate backend (no GPU needed)."""

import contextlib
import csv
import io
import json
import os
import sqlite3
from pathlib import Path

import pytest

from dstune.cli import main
from dstune.export import validate_config
from dstune.record import Basis
from dstune.search import Speedup

FILES = (
    "ds_config_actor.json",
    "ds_config_critic.json",
    "ds_config_ref.json",
    "ds_config_reward.json",
    "run_step3.sh",
    "plan.json",
    "trials.csv",
    "study.db",
)


def _search(out: Path, *extra: str, capsys=None) -> int:
    return main(
        [
            "search",
            "--model",
            "opt-6.7b",
            "--gpus",
            "8",
            "--gpu-type",
            "A100-80G",
            "--out",
            str(out),
            "--backend",
            "auto",
            "--trials",
            "8",
            "--seed",
            "1",
            *extra,
        ]
    )


def _trials(out: Path) -> list[dict]:
    with (out / "trials.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "opt"
    assert _search(out) == 0
    return out


def test_writes_every_file_and_says_it_simulated(searched, capsys):
    for name in FILES:
        assert (searched / name).is_file(), name
    plan = json.loads((searched / "plan.json").read_text())
    assert plan["backend"] == "simulate" and "simulated: no GPUs of this kind here" in plan["backend_note"]
    for key in (
        "step",
        "model",
        "gpus",
        "gpu_type",
        "backend",
        "study",
        "plan",
        "predicted",
        "measured",
        "baseline",
        "versions",
        "headroom",
        "created",
    ):
        assert key in plan
    assert plan["measured"] is None
    assert plan["predicted"]["throughput"]["samples_per_s"] > 0
    assert plan["baseline"]["plan"]["actor_zero_stage"] == 3
    assert not list(searched.glob(".export-*"))


def test_configs_accepted_by_deepspeed(searched):
    for role in ("actor", "critic", "ref", "reward"):
        config = json.loads((searched / f"ds_config_{role}.json").read_text())
        validate_config(config, 8)
    script = (searched / "run_step3.sh").read_text()
    plan = json.loads((searched / "plan.json").read_text())["plan"]
    assert "deepspeed --num_gpus 8 --master_port 12346 main.py" in script
    assert f"--actor_zero_stage {plan['actor_zero_stage']}" in script
    assert ("--enable_hybrid_engine" in script) == plan["enable_hybrid_engine"]


def test_pick_at_least_as_fast_as_baseline(searched):
    plan = json.loads((searched / "plan.json").read_text())
    pick = plan["predicted"]["throughput"]["samples_per_s"]
    base = plan["baseline"]["predicted"]["throughput"]["samples_per_s"]
    if plan["baseline"]["broken_on_this_stack"]:
        # the shipped script cannot run here (e.g. the doctor's HE verdict is broken): it is never the pick, and the
        # pick, which avoids what breaks it, may be predicted slower than the crashing script's prediction
        ids = {i["id"] for i in plan["baseline"]["known_issues"]}
        assert ids and not ("he_broken_stack" in ids and plan["plan"]["enable_hybrid_engine"])
        assert plan["plan"] != plan["baseline"]["plan"]
    else:
        assert pick >= base
    assert plan["predicted"]["memory"]["gpu_peak_bytes"] <= plan["memory_cap_bytes"]


def test_rerun_continues_the_study_without_repeats(searched):
    before = _trials(searched)
    assert _search(searched) == 0
    after = _trials(searched)
    assert len(after) == len(before)  # simulate scores the whole grid: a rerun has nothing new to record
    assert [r["number"] for r in after] == [r["number"] for r in before]
    knobs = [
        c
        for c in after[0]
        if c not in ("number", "status", "source", "reason", "p_fit") and not c.startswith(("predicted_", "measured_"))
    ]
    keys = [tuple(r[k] for k in knobs) for r in after if r["source"] != "repeat"]
    assert len(keys) == len(set(keys))
    assert sum(r["source"] == "baseline" for r in after) == 1
    with sqlite3.connect(searched / "study.db") as db:
        assert db.execute("select count(*) from studies").fetchone()[0] == 1


def test_json_output_is_plan_json(tmp_path, capsys):
    out = tmp_path / "j"
    assert (
        main(
            [
                "search",
                "--model",
                "opt-1.3b",
                "--gpus",
                "8",
                "--gpu-type",
                "A100-80G",
                "--out",
                str(out),
                "--trials",
                "3",
                "--json",
                "--step",
                "sft",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["step"] == "sft" and printed["plan"] is not None
    assert (out / "ds_config.json").is_file() and (out / "run_step1.sh").is_file()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda t: ["--space", str(_write(t, "step: ppo\nknobs:\n  actor_zero: [1]\n"))], "knobs.actor_zero"),
        (
            lambda t: ["--space", str(_write(t, "step: ppo\nknobs:\n  actor_zero_stage: [9]\n"))],
            "knobs.actor_zero_stage",
        ),
        (
            lambda t: [
                "--space",
                str(
                    _write(
                        t,
                        "step: ppo\nknobs:\n  actor_zero_stage: [1]\n  enable_hybrid_engine: [true]\n"
                        "  inference_tp_size: [2]\n",
                    )
                ),
            ],
            "none of its",
        ),
        (lambda t: ["--storage", "sqlite:////nonexistent-dir/x/study.db"], "--storage"),
        (lambda t: ["--storage", "postgresql://nobody@127.0.0.1:1/none"], "--storage"),
        (lambda t: ["--backend", "replay"], "--table"),
        (lambda t: ["--headroom", "1.5"], "--headroom"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, make_args, message):
    out = tmp_path / "out"
    code = main(
        ["search", "--model", "opt-1.3b", "--gpus", "8", "--out", str(out), "--trials", "2", *make_args(tmp_path)]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err
    assert not (out / "plan.json").exists()


def test_unwritable_out_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["search", "--model", "opt-1.3b", "--gpus", "8", "--out", str(blocker / "sub"), "--trials", "2"])
    assert code == 2 and "--out" in capsys.readouterr().err


@pytest.fixture(scope="module")
def said(tmp_path_factory) -> tuple[str, dict]:
    """What `dstune search --model opt-6.7b --gpus 8` prints (lines unwrapped) and the plan.json it writes."""
    out = tmp_path_factory.mktemp("said") / "opt"
    buffer, columns = io.StringIO(), os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "4000"
    try:
        with contextlib.redirect_stdout(buffer):
            assert main(["search", "--model", "opt-6.7b", "--gpus", "8", "--out", str(out)]) == 0
    finally:
        os.environ.pop("COLUMNS") if columns is None else os.environ.update(COLUMNS=columns)
    return buffer.getvalue(), json.loads((out / "plan.json").read_text())


def test_verdict_reads_as_english(said):
    """The verdict names the reference once, with a verb that fits the ratio (a tie is no difference, a ratio
    under 1 is slower) and, for a shipped script that is broken on the target stack, names that stack after it."""
    text, plan = said
    speed, broken = plan["speedup_over_baseline"], plan["baseline"]["broken_on_this_stack"]
    reference = "DeepSpeed-Chat's script as shipped" if broken else "DeepSpeed-Chat's script for the same job"
    verdict = next(line for line in text.splitlines() if line.startswith("the pick "))
    value = f"{speed['value']:.2f}x"
    if speed["tie"]:
        direction = (
            "" if value == "1.00x" else (", though it is slower" if speed["value"] < 1 else ", though it is faster")
        )
        assert verdict.startswith(
            f"the pick shows no clear difference from {reference}{direction} ({value} predicted, "
        )
    elif speed["value"] < 1:
        assert verdict.startswith(f"the pick runs slower than {reference} ({value} its throughput, ")
    else:
        assert verdict.startswith(f"the pick runs {value} faster than {reference} (")
    if broken:
        ids = ", ".join(i["id"] for i in plan["baseline"]["known_issues"])
        from dstune.report._answer import target_stack

        assert verdict.endswith(f"), which is broken on stack {target_stack(plan)} ({ids})")
    assert "runs no clear" not in verdict and " the throughput of" not in verdict


@pytest.mark.parametrize(
    "speedup, expected",
    [
        (
            Speedup(0.71, (0.32, 1.56), Basis.PREDICTED, "90% interval from 55 published pairs"),
            "the pick shows no clear difference from R, though it is slower (0.71x predicted, 0.32-1.56x, 90% interval "
            "from 55 published pairs)",
        ),
        (
            Speedup(1.18, (0.51, 2.74), Basis.PREDICTED),
            "the pick shows no clear difference from R, though it is faster (1.18x predicted, 0.51-2.74x)",
        ),
        (
            Speedup(1.52, (1.10, 2.10), Basis.PREDICTED, "90% interval from 55 published pairs"),
            "the pick runs 1.52x faster than R (predicted, 1.10-2.10x, 90% interval from 55 published pairs)",
        ),
        (
            Speedup(0.62, (0.40, 0.95), Basis.PREDICTED),
            "the pick runs slower than R (0.62x its throughput, predicted, 0.40-0.95x)",
        ),
        (Speedup(1.25, None, Basis.MEASURED), "the pick runs 1.25x faster than R (measured)"),
        (Speedup(0.8, None, Basis.MEASURED), "the pick runs slower than R (0.80x its throughput, measured)"),
        (Speedup(1.001, None, Basis.MEASURED), "the pick runs as fast as R (1.00x measured)"),
        (
            Speedup(1.05, (0.93, 1.18), Basis.MEASURED, "90% t-interval over 3 interleaved baseline/pick runs"),
            "the pick shows no measurable difference from R, though it is faster (1.05x measured, 0.93-1.18x, 90% "
            "t-interval over 3 interleaved baseline/pick runs)",
        ),
    ],
)
def test_every_speedup_reads_as_a_clause(speedup, expected):
    assert speedup.versus("R") == expected


def test_notes_keep_their_sources(said):
    """Notes are data, not rich markup: the bracketed sources that end a known-issue note are printed."""
    text, plan = said
    notes = [line for line in text.splitlines() if line.startswith("note: ")]
    assert [n.removeprefix("note: ") for n in notes] == plan["notes"]
    for issue in plan["baseline"]["known_issues"]:
        cited = f"[{', '.join(issue['sources'])}]"
        assert any(issue["id"] in n and n.endswith(cited) for n in notes), cited
