"""The HE probe's JSON survives a C printf to file descriptor 1 (DeepSpeed's inference workspace banner)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

INJECT = """
import ctypes
import dstune.doctor._he as he

def probe_all():
    ctypes.CDLL(None).printf(b"------ allocate workspace banner from C ------\\n")
    print("a Python print as well")
    return {}

he.probe_all = probe_all
he.main()
"""


def test_a_c_printf_during_the_probe_goes_to_stderr_and_stdout_stays_json() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", INJECT], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {}  # before the fd-1 guard the banner followed the JSON on stdout
    assert "allocate workspace banner from C" in done.stderr and "a Python print" in done.stderr
