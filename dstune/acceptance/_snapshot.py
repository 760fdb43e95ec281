"""The two files the device command leaves under $OUT after every stage, so a cut-off run returns
what it had: summary.json (stages, trials, rows) and evidence.tar.gz (the work folder, logs tail-cut)."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SUMMARY_FILE = "summary.json"
ARCHIVE_FILE = "evidence.tar.gz"
LOG_TAIL_BYTES = 256 * 1024
"""A log keeps its last 256 KiB: the end says why a stage failed; the archive must stay far under 16 MiB."""
MAX_FILE_BYTES = 2 * 2**20
"""Any other file larger than this is left out (and named in the summary): results are kilobytes."""


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _member(path: Path) -> bytes | None:
    size = path.stat().st_size
    if path.suffix in (".log", ".txt") and size > LOG_TAIL_BYTES:
        with path.open("rb") as handle:
            handle.seek(size - LOG_TAIL_BYTES)
            return b"[... cut: only the last 256 KiB kept ...]\n" + handle.read()
    return None if size > MAX_FILE_BYTES else path.read_bytes()


def archive(work: Path) -> tuple[bytes, list[str]]:
    """work/ as a gzipped tar (paths relative to it); also the files left out for their size."""
    buffer = io.BytesIO()
    left_out = []
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(p for p in work.rglob("*") if p.is_file() and not p.is_symlink()):
            name = str(path.relative_to(work))
            try:
                data = _member(path)
            except OSError:
                continue  # a file removed while we read: the next snapshot has it or not
            if data is None:
                left_out.append(name)
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(path.stat().st_mtime)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), left_out


def snapshot(work: Path, out: Path, summary: Mapping[str, Any]) -> None:
    """Replace out/summary.json and out/evidence.tar.gz; each is whole or the previous one."""
    data, left_out = archive(work)
    _write_atomic(out / ARCHIVE_FILE, data)
    body = {**summary, "archive_left_out": left_out, "archive_bytes": len(data)}
    _write_atomic(out / SUMMARY_FILE, (json.dumps(body, indent=1) + "\n").encode())
