"""Multi-node trials through torchrun: one elastic agent per node, met at a c10d rendezvous.

`run_trial` starts this module (as one process group it can end as a whole); it starts one
`torchrun` agent per hostfile line: on this machine directly, elsewhere through `ssh HOST`, and
exits with the worst agent's exit code. The trial directory must be on a filesystem every
node sees (the ranks write their results there).
"""

from __future__ import annotations

import json
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserInputError

AGENTS_FILE = "agents.json"
LOCAL_NAMES = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class Host:
    name: str
    slots: int

    @property
    def local(self) -> bool:
        return self.name in LOCAL_NAMES or self.name in (socket.gethostname(), socket.getfqdn())


def read_hostfile(path: Path) -> list[Host]:
    """DeepSpeed's hostfile format ('HOST slots=N' per line, # comments); one torchrun agent per line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise UserInputError(f"--hostfile {path}: {error.strerror or error}") from None
    hosts = []
    for number, line in enumerate(lines, start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        slots = [w for w in words[1:] if w.startswith("slots=")]
        try:
            hosts.append(Host(words[0], int(slots[0].split("=", 1)[1]) if slots else 1))
        except ValueError:
            raise UserInputError(f"--hostfile {path}: line {number}: expected 'HOST slots=N'") from None
    if not hosts:
        raise UserInputError(f"--hostfile {path}: no hosts")
    return hosts


def agent_commands(
    hosts: list[Host], *, gpus_per_node: int, port: int, spec_path: Path, run_id: str, worker_module: str
) -> list[list[str]]:
    """One torchrun agent per host; the first host serves the c10d rendezvous (at an address every
    host reaches: loopback only when all agents run here)."""
    if all(h.local for h in hosts):
        first = "127.0.0.1"
    else:
        first = socket.gethostname() if hosts[0].local else hosts[0].name
    endpoint = f"{first}:{port}"
    out = []
    for host in hosts:
        agent = [
            sys.executable,
            "-u",
            "-m",
            "torch.distributed.run",
            "--nnodes",
            str(len(hosts)),
            "--nproc_per_node",
            str(gpus_per_node),
            "--rdzv_backend",
            "c10d",
            "--rdzv_endpoint",
            endpoint,
            "--rdzv_id",
            run_id,
            "-m",
            worker_module,
            "--spec",
            str(spec_path),
        ]
        out.append(
            agent
            if host.local
            else [
                "ssh",
                host.name,
                f"cd {shlex.quote(str(spec_path.parent))} && " + " ".join(shlex.quote(a) for a in agent),
            ]
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the agents listed in agents.json (argv[0]); forward SIGTERM; return the worst exit code."""
    commands = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    procs = [subprocess.Popen(command) for command in commands]

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    codes = [proc.wait() for proc in procs]
    return max(codes, key=lambda c: (c != 0, abs(c)))


if __name__ == "__main__":
    sys.exit(main())
