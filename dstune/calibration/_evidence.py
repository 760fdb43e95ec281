"""The evidence corpus: published GPU measurements of DeepSpeed runs, one cited row each.

Plain data under data/evidence/ (rows.csv, sources.json), never pickles. A row names its
source precisely (repository, file, section/table/cell), the hardware, the models and
the workload, the settings as far as the source states them (`settings`, DeepSpeed-Chat
flag names), what was measured (an epoch time, samples/s, a peak, or a fits / does-not-fit
fact), and what the source leaves unstated with what dstune assumes for it.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

EVIDENCE_DIR = Path(str(resources.files("dstune.calibration") / "data" / "evidence"))
ROWS_FILE = EVIDENCE_DIR / "rows.csv"
SOURCES_FILE = EVIDENCE_DIR / "sources.json"


@dataclass(frozen=True)
class Source:
    """Where a group of rows comes from and the measuring method it states."""

    key: str
    title: str
    where: str
    method: str
    reproduction: str
    """Name of the function in _reproduce.py that turns its rows into plans."""


@dataclass(frozen=True)
class EvidenceRow:
    """One published measurement; empty figures are None (a blank cell is 'not reported')."""

    id: str
    source: str
    cell: str
    step: str
    model: str
    critic_model: str | None
    gpu_type: str
    gpus: int
    nodes: int
    samples: int | None
    """Samples the timed run processed (pairs for PPO and RM), for epoch times."""
    settings: tuple[tuple[str, Any], ...]
    published: str
    """The figure as printed by the source."""
    epoch_time_s: float | None
    samples_per_s: float | None
    phase_s: tuple[tuple[tuple[str, ...], float], ...]
    """Published phase times: (dstune phases summed, seconds), e.g. (("generation", "experience"), 2.52)."""
    peak_alloc_gib: float | None
    fits: bool | None
    metric: str
    """What the figure times: 'end_to_end' (the whole step) or 'autotuner' (DeepSpeed's forward, backward
    and step timers only, as the autotuner reports); ratios are only taken between rows of one metric."""
    basis: str
    in_fit: bool
    """False for a repeat of another row's measurement (kept for the record, not counted twice)."""
    stated: str
    assumed: str

    @property
    def measured_samples_per_s(self) -> float | None:
        """Throughput in samples/s, from samples/s or from an epoch time."""
        if self.samples_per_s:
            return self.samples_per_s
        if self.epoch_time_s and self.samples:
            return self.samples / self.epoch_time_s
        return None

    @property
    def known_to_fit(self) -> bool | None:
        """A measured time or peak means the run fitted; otherwise the stated fact, if any."""
        if self.fits is not None:
            return self.fits
        return True if (self.measured_samples_per_s or self.peak_alloc_gib) else None

    @property
    def settings_dict(self) -> dict[str, Any]:
        return dict(self.settings)


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_settings(text: str) -> tuple[tuple[str, Any], ...]:
    """`a=1;b=x` -> (("a", 1), ("b", "x")); booleans are written 1/0 like DeepSpeed-Chat's flags."""
    pairs = [item.split("=", 1) for item in text.split(";") if item.strip()]
    return tuple((k.strip(), _value(v.strip())) for k, v in pairs)


def parse_phases(text: str) -> tuple[tuple[tuple[str, ...], float], ...]:
    """`generation+experience=2.52;actor_train+critic_train=1.06` -> ((("generation", "experience"), 2.52), ...)."""
    return tuple((tuple(k.split("+")), float(v)) for k, v in parse_settings(text))


def _optional(text: str, cast: Any) -> Any:
    return cast(text) if text.strip() else None


def _row(record: dict[str, str]) -> EvidenceRow:
    return EvidenceRow(
        id=record["id"],
        source=record["source"],
        cell=record["cell"],
        step=record["step"],
        model=record["model"],
        critic_model=record["critic_model"] or None,
        gpu_type=record["gpu_type"],
        gpus=int(record["gpus"]),
        nodes=int(record["nodes"]),
        samples=_optional(record["samples"], int),
        settings=parse_settings(record["settings"]),
        published=record["published"],
        epoch_time_s=_optional(record["epoch_time_s"], float),
        samples_per_s=_optional(record["samples_per_s"], float),
        phase_s=parse_phases(record.get("phase_s", "")),
        peak_alloc_gib=_optional(record["peak_alloc_gib"], float),
        fits=_optional(record["fits"], lambda v: bool(int(v))),
        metric=record.get("metric") or "end_to_end",
        basis=record["basis"],
        in_fit=bool(int(record["in_fit"])),
        stated=record["stated"],
        assumed=record["assumed"],
    )


@functools.lru_cache(maxsize=1)
def load_corpus() -> tuple[EvidenceRow, ...]:
    """Every row of rows.csv, in file order."""
    with ROWS_FILE.open(newline="", encoding="utf-8") as handle:
        return tuple(_row(record) for record in csv.DictReader(handle))


@functools.lru_cache(maxsize=1)
def load_sources() -> dict[str, Source]:
    data = json.loads(SOURCES_FILE.read_text(encoding="utf-8"))
    return {
        key: Source(key=key, title=v["title"], where=v["where"], method=v["method"], reproduction=v["reproduction"])
        for key, v in data.items()
    }


def corpus_version() -> str:
    """Content hash of the corpus files: a fitted result names the corpus it came from."""
    digest = hashlib.sha256()
    for path in (ROWS_FILE, SOURCES_FILE):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
