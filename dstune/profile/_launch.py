"""A trial's launch: the launcher's argv (deepspeed or torchrun, never a shell string), the environment the
ranks get, and the files in the trial folder that record both before anything runs."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserInputError
from ._agents import AGENTS_FILE, agent_commands, read_hostfile
from ._result import COMMAND_FILE, SPEC_FILE, write_json_atomic

if TYPE_CHECKING:
    from ..catalog import ClusterSpec


LAUNCHERS = ("deepspeed", "torchrun")
WORKER_MODULE = "dstune.profile.worker"


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_argv(
    *, launcher: str, gpus_per_node: int, nodes: int, port: int, spec_path: Path, hostfile: Path | None
) -> list[str]:
    """The launcher command as an argv list (never a shell string)."""
    worker = ["--spec", str(spec_path)]
    if launcher == "deepspeed":
        argv = [
            sys.executable,
            "-u",
            "-m",
            "deepspeed.launcher.runner",
            "--num_gpus",
            str(gpus_per_node),
            "--num_nodes",
            str(nodes),
            "--master_port",
            str(port),
        ]
        if hostfile is not None:
            argv += ["--hostfile", str(hostfile)]
        return argv + ["--module", WORKER_MODULE] + worker
    if launcher == "torchrun" and nodes > 1:
        return [sys.executable, "-u", "-m", "dstune.profile._agents", str(spec_path.parent / AGENTS_FILE)]
    if launcher == "torchrun":
        return [
            sys.executable,
            "-u",
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(gpus_per_node),
            "--nnodes",
            "1",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            "-m",
            WORKER_MODULE,
        ] + worker
    raise UserInputError(f"unknown launcher {launcher!r}; choose one of {', '.join(LAUNCHERS)}")


def worker_pythonpath(inherited: str | None) -> str:
    """PYTHONPATH for the ranks: the folder this dstune was imported from first, then what we inherit.
    Ranks start in the trial folder, so an uninstalled checkout (the GPU node's) imports there only so."""
    import dstune

    root = str(Path(dstune.__file__).resolve().parent.parent)
    rest = [entry for entry in (inherited or "").split(os.pathsep) if entry and entry != root]
    return os.pathsep.join([root, *rest])


def env_overrides(device: str, ranks_per_node: int, user_env: Mapping[str, str] | None) -> dict[str, str]:
    """Environment the trial adds to ours: quiet tokenizers, unbuffered logs, CPU threads split per rank,
    and this dstune's own folder on PYTHONPATH."""
    env = {
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
        "PYTHONPATH": worker_pythonpath((user_env or {}).get("PYTHONPATH", os.environ.get("PYTHONPATH"))),
    }
    if device == "cpu":
        env["DS_ACCELERATOR"] = "cpu"
        if "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // ranks_per_node))
    env.update({k: v for k, v in (user_env or {}).items() if k != "PYTHONPATH"})
    return env


def write_launch(
    trial_dir: Path,
    cluster: ClusterSpec,
    port: int,
    device: str,
    launcher: str,
    hostfile: Path | None,
    env: Mapping[str, str] | None,
    timeout_s: float,
) -> tuple[list[str], dict[str, str]]:
    """The launch command (and, for torchrun on several nodes, each node's agent command) written to the trial
    folder before anything runs, so a trial can be rerun or debugged by hand; returns argv and the env overrides."""
    argv = launch_argv(
        launcher=launcher,
        gpus_per_node=cluster.gpus_per_node,
        nodes=cluster.nodes,
        port=port,
        spec_path=trial_dir / SPEC_FILE,
        hostfile=hostfile,
    )
    if launcher == "torchrun" and cluster.nodes > 1:
        assert hostfile is not None  # _check_setup refuses several nodes without one
        agents = agent_commands(
            read_hostfile(hostfile),
            gpus_per_node=cluster.gpus_per_node,
            port=port,
            spec_path=trial_dir / SPEC_FILE,
            run_id=trial_dir.name,
            worker_module=WORKER_MODULE,
        )
        write_json_atomic(trial_dir / AGENTS_FILE, agents)
    overrides = env_overrides(device, cluster.gpus_per_node, env)
    write_json_atomic(
        trial_dir / COMMAND_FILE, {"argv": argv, "env": overrides, "cwd": str(trial_dir), "timeout_s": timeout_s}
    )
    return argv, overrides
