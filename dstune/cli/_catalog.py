"""`dstune models` and `dstune gpus`: what the catalog knows and what this machine has."""

from __future__ import annotations

import argparse

from ..catalog import detect_local_gpus, list_gpus, list_models
from ..frameworks._common import print_json
from ._command import Command


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _run_models(args: argparse.Namespace) -> int:
    models = list_models()
    rows = [
        {
            "name": m.name,
            "params": m.num_params,
            "family": m.family,
            "layers": m.num_layers,
            "hidden_size": m.hidden_size,
            "heads": m.num_heads,
            "kv_heads": m.num_kv_heads,
            "vocab_size": m.vocab_size,
            "max_positions": m.max_positions,
            "aliases": list(m.aliases),
        }
        for m in models
    ]
    if args.json:
        print_json(rows)
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="dstune model catalog")
    for column in ("name", "params", "layers", "hidden", "heads/kv", "aliases"):
        table.add_column(column, justify="right" if column in ("params", "layers", "hidden") else "left")
    for m in models:
        table.add_row(
            escape(m.name),
            f"{m.num_params:,}",
            str(m.num_layers),
            str(m.hidden_size),
            f"{m.num_heads}/{m.num_kv_heads}",
            escape(", ".join(m.aliases)),
        )
    Console().print(table)
    return 0


def _run_gpus(args: argparse.Namespace) -> int:
    gpus = list_gpus()
    detected = detect_local_gpus()
    if args.json:
        print_json(
            {
                "catalog": [
                    {
                        "name": g.name,
                        "memory_bytes": g.memory_bytes,
                        "bf16_dense_tflops": g.bf16_dense_tflops,
                        "fp16_dense_tflops": g.fp16_dense_tflops,
                        "hbm_bandwidth_in_GB_per_sec": g.hbm_bandwidth_in_GB_per_sec,
                        "intra_node_link": g.intra_node_link,
                        "intra_node_link_in_GB_per_sec": g.intra_node_link_in_GB_per_sec,
                        "host_link_in_GB_per_sec": g.host_link_in_GB_per_sec,
                        "aliases": list(g.aliases),
                    }
                    for g in gpus
                ],
                "detected": [
                    {
                        "index": d.index,
                        "nvml_name": d.nvml_name,
                        "memory_bytes": d.memory_bytes,
                        "catalog_name": d.spec.name if d.spec else None,
                    }
                    for d in detected
                ],
            }
        )
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="dstune GPU catalog (dense tensor-core peaks, no sparsity)")
    for column in ("name", "memory GiB", "bf16 TFLOP/s", "fp16 TFLOP/s", "HBM GB/s", "GPU link", "host GB/s"):
        table.add_column(column, justify="left" if column in ("name", "GPU link") else "right")
    for g in gpus:
        table.add_row(
            escape(g.name),
            f"{g.memory_in_GiB:g}",
            "-" if g.bf16_dense_tflops is None else f"{g.bf16_dense_tflops:g}",
            f"{g.fp16_dense_tflops:g}",
            f"{g.hbm_bandwidth_in_GB_per_sec:g}",
            escape(f"{g.intra_node_link} {g.intra_node_link_in_GB_per_sec:g} GB/s"),
            f"{g.host_link_in_GB_per_sec:g}",
        )
    console = Console()
    console.print(table)
    if detected:
        for d in detected:
            console.print(
                f"GPU {d.index}: {d.nvml_name} ({d.memory_bytes / 2**30:.1f} GiB) -> "
                f"{d.spec.name if d.spec else 'not in the catalog'}",
                markup=False,
            )
    else:
        console.print("no local GPU detected (NVML found none)")
    return 0


MODELS = Command("models", "list the model catalog", _json_flag, _run_models)
GPUS = Command("gpus", "list the GPU catalog and the GPUs detected on this machine", _json_flag, _run_gpus)
