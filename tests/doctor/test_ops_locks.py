"""Stale torch-extension locks: a dead builder's lock is found and cleared, a live builder's is left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dstune.doctor._locks import clear_stale_locks, find_locks, inspect_lock
from dstune.doctor._report import _lock_findings

HOLD = """
import sys, time
from torch.utils.file_baton import FileBaton
baton = FileBaton(sys.argv[1])
assert baton.try_acquire()
print("held", flush=True)
time.sleep(600)
"""


def _plant(root: Path, op: str = "deepspeed_shm_comm") -> Path:
    (root / op).mkdir(parents=True)
    lock = root / op / "lock"
    lock.touch()
    return lock


def test_planted_lock_without_holder_is_stale_and_cleared(tmp_path: Path) -> None:
    lock = _plant(tmp_path)
    assert [found.state for found in find_locks(str(tmp_path))] == ["stale"]
    removed, unproven = clear_stale_locks(str(tmp_path))
    assert removed == [str(lock)] and unproven == []
    assert not lock.exists()


def test_default_layout_with_tag_directory_is_found(tmp_path: Path) -> None:
    lock = _plant(tmp_path / "py312_cpu", "cpu_adam")
    assert [found.path for found in find_locks(str(tmp_path))] == [str(lock)]


def test_live_builder_lock_is_held_until_the_builder_dies(tmp_path: Path) -> None:
    (tmp_path / "cpu_adam").mkdir()
    lock = tmp_path / "cpu_adam" / "lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        state = inspect_lock(str(lock))
        assert state.state == "held" and holder.pid in state.holders
        assert clear_stale_locks(str(tmp_path)) == ([], [])
        assert lock.exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert inspect_lock(str(lock)).state == "stale"
    assert clear_stale_locks(str(tmp_path))[0] == [str(lock)]


def test_doctor_names_a_stale_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = _plant(tmp_path)
    os.utime(lock, (time.time() - 120, time.time() - 120))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    findings = _lock_findings()
    assert len(findings) == 1 and findings[0].level == "warn"
    assert str(lock) in findings[0].consequence and "stale" in findings[0].consequence


RELEASE = """
import sys, time
from torch.utils.file_baton import FileBaton
baton = FileBaton(sys.argv[1])
assert baton.try_acquire()
print("held", flush=True)
sys.stdin.readline()
# FileBaton.release, its two steps apart: close the descriptor, then remove the file (a slow disk or a busy host)
import os
os.close(baton.fd)
baton.fd = None
print("closed", flush=True)
time.sleep(float(sys.argv[2]))
baton.release()
print("released", flush=True)
"""


def test_a_lock_being_released_is_not_cleared_under_its_builder(tmp_path: Path) -> None:
    """Between FileBaton's close and remove the lock has no holder; judged stale then and removed, the
    builder's own remove fails. The second look finds the file gone and leaves the builder alone."""
    (tmp_path / "cpu_adam").mkdir()
    lock = tmp_path / "cpu_adam" / "lock"
    builder = subprocess.Popen(
        [sys.executable, "-c", RELEASE, str(lock), "0.2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert builder.stdin is not None and builder.stdout is not None
    assert builder.stdout.readline().strip() == "held"
    builder.stdin.write("\n")
    builder.stdin.flush()
    assert builder.stdout.readline().strip() == "closed"
    removed, unproven = clear_stale_locks(str(tmp_path), settle_s=1.0)
    out, err = builder.communicate(timeout=60)
    assert builder.returncode == 0 and out.strip() == "released", err
    assert removed == [] and unproven == [] and not lock.exists()


LATE = """
import sys, time
from torch.utils.file_baton import FileBaton
baton = FileBaton(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
assert baton.try_acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_lock_replaced_during_the_pause_is_judged_again(tmp_path: Path) -> None:
    """A dead builder's lock that a new builder replaces while dstune pauses is the new builder's: held."""
    import threading

    lock = _plant(tmp_path, "cpu_adam")
    holder = subprocess.Popen(
        [sys.executable, "-c", LATE, str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdin is not None and holder.stdout is not None
    stdin, stdout = holder.stdin, holder.stdout
    replaced = threading.Event()

    def replace() -> None:
        time.sleep(0.3)
        lock.unlink()
        stdin.write("\n")
        stdin.flush()
        if stdout.readline().strip() == "held":
            replaced.set()

    try:
        assert stdout.readline().strip() == "ready"
        thread = threading.Thread(target=replace)
        thread.start()
        state = inspect_lock(str(lock), settle_s=3.0)
        thread.join(timeout=60)
        assert replaced.is_set() and state.state == "held" and holder.pid in state.holders
        assert clear_stale_locks(str(tmp_path), settle_s=0.2) == ([], []) and lock.exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()


def test_cuda_ops_need_nvcc_to_be_jit_built(tmp_path) -> None:
    """On the CUDA accelerator without nvcc, fused_adam and transformer_inference cannot be JIT-built,
    however many C++ compilers there are; the doctor says so instead of promising a build."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = (
        "import json; from dstune.doctor._ops import op_statuses; "
        "print(json.dumps({o.name: [o.jit_possible, o.note] for o in op_statuses()}))"
    )
    import shutil

    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_HOME", "CUDA_PATH")}
    tools = tmp_path / "bin"  # ninja and a C++ compiler stay reachable; nvcc does not
    tools.mkdir()
    for tool in ("ninja", "c++", "g++"):
        if shutil.which(tool):
            (tools / tool).symlink_to(shutil.which(tool))
    kept = [p for p in env.get("PATH", "").split(os.pathsep) if not os.access(os.path.join(p, "nvcc"), os.X_OK)]
    env["PATH"] = os.pathsep.join([str(tools), *kept])
    env.update(DS_ACCELERATOR="cuda", PYTHONPATH=str(root), TORCH_EXTENSIONS_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ("fused_adam", "transformer_inference"):
        assert found[name][0] is False and "nvcc" in found[name][1], found
