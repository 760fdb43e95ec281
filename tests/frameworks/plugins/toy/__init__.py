"""A toy third framework, whole in this one folder: one knob (`micro_batch`), one cost term (a step's
compute at the GPU's peak rate plus a fixed overhead), and memory that grows with the knob. It exists
to show that a framework plugs in through dstune.frameworks alone: importing this folder registers it,
and `dstune estimate|search --framework toy` then run it through the real CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from dstune.catalog import load_gpu, load_model
from dstune.errors import UserInputError
from dstune.frameworks import CommandOptions, Framework, flag, register_framework
from dstune.record import atomic_write

OVERHEAD_S = 0.05
"""A step's fixed cost (launch, synchronisation), seconds."""
BYTES_PER_TOKEN_PER_PARAM = 2e-4
"""Activation bytes per token per parameter: a toy figure, not DeepSpeed's."""
TOKENS = 512


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToyOptions(CommandOptions):
    gpu_type: str = flag("A100-80G", help="catalog GPU (default A100-80G)")
    assignments: tuple[str, ...] = flag((), name="--set", repeat=True, metavar="KNOB=VALUE", help="micro_batch=N")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToySearchOptions(ToyOptions):
    out: Path | None = flag(None, help="output folder", parse=Path)


@dataclasses.dataclass(frozen=True)
class ToyFigures:
    micro_batch: int
    step_s: float
    samples_per_s: float
    gpu_peak_bytes: float
    gpu_capacity_bytes: int
    exit_code: int = 0

    @property
    def feasible(self) -> bool:
        return self.gpu_peak_bytes <= self.gpu_capacity_bytes

    def to_json(self) -> dict[str, Any]:
        body = {k: v for k, v in dataclasses.asdict(self).items() if k != "exit_code"}
        return {"framework": "toy", **body, "feasible": self.feasible, "basis": "predicted"}

    def render(self) -> None:
        print(f"micro_batch {self.micro_batch}: {self.samples_per_s:,.2f} samples/s (predicted)")


@dataclasses.dataclass(frozen=True)
class ToySearch:
    pick: ToyFigures
    candidates: int
    out: Path
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        return {**self.pick.to_json(), "candidates_scored": self.candidates, "plan_json": str(self.out / "plan.json")}

    def render(self) -> None:
        print(f"pick of {self.candidates}: micro_batch {self.pick.micro_batch}; wrote {self.out / 'plan.json'}")


def _figures(options: ToyOptions, micro_batch: int) -> ToyFigures:
    model, gpu = load_model(options.model), load_gpu(options.gpu_type)
    flops = 6 * model.num_params * TOKENS * micro_batch
    step_s = OVERHEAD_S + flops / (gpu.peak_tflops("bf16") * 1e12)
    peak = 16 * model.num_params + BYTES_PER_TOKEN_PER_PARAM * model.num_params * TOKENS * micro_batch
    return ToyFigures(micro_batch, step_s, micro_batch * options.gpus / step_s, peak, gpu.memory_bytes)


def _micro_batch(options: ToyOptions) -> int:
    values = dict(a.partition("=")[::2] for a in options.assignments)
    unknown = set(values) - {"micro_batch"}
    if unknown:
        raise UserInputError(f"{sorted(unknown)[0]} is not a toy knob (micro_batch)")
    return int(values.get("micro_batch", 1))


@register_framework
class Toy(Framework):
    name = "toy"
    title = "Toy"
    supported_versions = ("1.0",)
    options = {"estimate": ToyOptions, "search": ToySearchOptions}

    def knob_names(self) -> frozenset[str]:
        return frozenset({"micro_batch"})

    def estimate(self, options: ToyOptions) -> ToyFigures:
        """Predict the toy step of one micro-batch size."""
        return _figures(options, _micro_batch(options))

    def search(self, options: ToySearchOptions) -> ToySearch:
        """Score micro-batch sizes 1..64 and write the fastest that fits."""
        scored = [_figures(options, m) for m in (1, 2, 4, 8, 16, 32, 64)]
        fitting = [f for f in scored if f.feasible]
        if not fitting:
            raise UserInputError("no micro-batch size fits")
        out = options.out or Path("reports") / f"toy-{options.model}"
        result = ToySearch(max(fitting, key=lambda f: f.samples_per_s), len(scored), out)
        self.export(result, out)
        return result

    def export(self, result: Any, out: Path) -> list[str]:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "plan.json", json.dumps(result.to_json(), indent=2) + "\n")
        return ["plan.json"]
