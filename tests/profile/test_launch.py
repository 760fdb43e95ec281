"""The launcher commands are argv lists with the right flags (no process is started here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dstune.errors import UserInputError
from dstune.profile._launch import env_overrides, free_port, launch_argv


def test_deepspeed_argv_multi_node_passes_nodes_and_hostfile(tmp_path: Path) -> None:
    argv = launch_argv(
        launcher="deepspeed",
        gpus_per_node=8,
        nodes=2,
        port=29555,
        spec_path=tmp_path / "spec.json",
        hostfile=tmp_path / "hosts",
    )
    assert argv[:4] == [sys.executable, "-u", "-m", "deepspeed.launcher.runner"]
    flags = dict(zip(argv[4::2], argv[5::2]))
    assert flags["--num_gpus"] == "8" and flags["--num_nodes"] == "2" and flags["--master_port"] == "29555"
    assert flags["--hostfile"] == str(tmp_path / "hosts")
    assert argv[-4:] == ["--module", "dstune.profile.worker", "--spec", str(tmp_path / "spec.json")]


def test_torchrun_argv_and_unknown_launcher(tmp_path: Path) -> None:
    argv = launch_argv(
        launcher="torchrun", gpus_per_node=2, nodes=1, port=29556, spec_path=tmp_path / "s.json", hostfile=None
    )
    assert argv[3] == "torch.distributed.run" and "--nproc_per_node" in argv
    assert argv[-4:-2] == ["-m", "dstune.profile.worker"]
    with pytest.raises(UserInputError, match="launcher"):
        launch_argv(launcher="mpirun", gpus_per_node=1, nodes=1, port=1, spec_path=tmp_path, hostfile=None)


def test_free_port_and_cpu_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert 0 < free_port() < 65536
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = env_overrides("cpu", 2, {"EXTRA": "1"})
    assert env["DS_ACCELERATOR"] == "cpu" and int(env["OMP_NUM_THREADS"]) >= 1 and env["EXTRA"] == "1"
    assert env["TOKENIZERS_PARALLELISM"] == "false"
    assert "DS_ACCELERATOR" not in env_overrides("cuda", 8, None)


def test_torchrun_on_several_nodes_starts_one_agent_per_host(tmp_path: Path) -> None:
    import socket

    from dstune.profile._agents import agent_commands, read_hostfile

    hosts = tmp_path / "hostfile"
    hosts.write_text("# two nodes\nlocalhost slots=8\nnode-b slots=8\n")
    parsed = read_hostfile(hosts)
    assert [(h.name, h.slots, h.local) for h in parsed] == [("localhost", 8, True), ("node-b", 8, False)]
    local, remote = agent_commands(
        parsed,
        gpus_per_node=8,
        port=29500,
        spec_path=tmp_path / "spec.json",
        run_id="trial-0001",
        worker_module="dstune.profile.worker",
    )
    endpoint = f"{socket.gethostname()}:29500"  # node-b must reach it: not loopback
    assert local[3] == "torch.distributed.run" and endpoint in local and "--rdzv_id" in local
    assert remote[:2] == ["ssh", "node-b"] and endpoint in remote[2]
    argv = launch_argv(
        launcher="torchrun", gpus_per_node=8, nodes=2, port=29500, spec_path=tmp_path / "spec.json", hostfile=hosts
    )
    assert argv[-2:] == ["dstune.profile._agents", str(tmp_path / "agents.json")]
    (tmp_path / "bad").write_text("node-a slots=x\n")
    with pytest.raises(UserInputError, match="line 1"):
        read_hostfile(tmp_path / "bad")


def test_ranks_import_this_dstune_from_their_trial_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranks start in the trial folder: on a node where dstune is a plain checkout (not installed), only
    the worker's own PYTHONPATH lets them import it, with the launcher's inherited entries kept after it."""
    import os
    import subprocess

    import dstune

    root = str(Path(dstune.__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", f"/opt/site{os.pathsep}{root}")
    env = env_overrides("cuda", 1, None)
    assert env["PYTHONPATH"].split(os.pathsep) == [root, "/opt/site"]
    monkeypatch.delenv("PYTHONPATH")
    env = {**os.environ, **env_overrides("cpu", 1, None)}
    done = subprocess.run(
        [sys.executable, "-c", "import dstune; print(dstune.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert Path(done.stdout.strip()).resolve() == Path(dstune.__file__).resolve(), done.stderr
