"""Measure the per-token bytes a decoder layer saves for backward and write dstune/costmodel/data/activations.json.

Runs real transformers models built from small configs on the CPU in train mode under
torch.autograd.graph.saved_tensors_hooks (dstune/costmodel/_activation_probe.py), for OPT and LLaMA, with dropout 0
(DeepSpeed-Chat's step-3 scripts set actor_dropout 0.0) and OPT's own 0.1. Two stacks, each measured with its own
transformers:
  --stack installed   this environment (SDPA, the default, and eager attention; bf16)
  --stack published   the stack the published rows ran (2023: transformers 4.28.1, fp16, eager attention only), run
                      from a separate venv: pip install torch==2.13.0 transformers==4.28.1 "numpy<2"
The figures are byte counts of what the forward keeps, not timings. --check compares with the shipped file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HOW = (
    "scripts/measure_activations.py: models from configs (random weights), train mode, CPU; distinct non-parameter "
    "storages saved by autograd (saved_tensors_hooks), 3-layer minus 1-layer model over the shapes of "
    "dstune/costmodel/_activation_probe.py GRID, solved per token for `terms`; logits bytes from two vocabularies"
)


def measure(stack: str) -> dict:
    import torch
    import transformers

    from dstune.costmodel._activation_probe import dropout_mask_bytes, layer_coefficients, logits_bytes_per_element

    installed = stack == "installed"
    dtype = "bfloat16" if installed else "float16"
    attentions = ("sdpa", "eager") if installed else ("eager",)
    layers = {}
    for family in ("opt", "llama"):
        for attn in attentions:
            for dropout in (0.0, 0.1) if family == "opt" else (0.0,):
                key = f"{family}/{attn}/dropout{dropout:g}"
                layers[key] = layer_coefficients(family, attn, dropout, dtype, grouped_kv=installed)
    return {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "dtype": dtype,
        "device": "cpu",
        "dropout_mask_bytes_per_element": dropout_mask_bytes(dtype),
        "attention": attentions[0],
        "layer_bytes_per_token": layers,
        "hf_loss_logits_bytes_per_element": {
            f: logits_bytes_per_element(f, attentions[0], dtype) for f in ("opt", "llama")
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", choices=("installed", "published"), default="installed")
    parser.add_argument("--check", action="store_true", help="compare with the shipped file instead of writing it")
    args = parser.parse_args(argv)
    from dstune.costmodel._activation_probe import GRID, TERMS
    from dstune.costmodel._activations import ACTIVATIONS_FILE

    data = measure(args.stack)
    shipped = json.loads(ACTIVATIONS_FILE.read_text()) if ACTIVATIONS_FILE.exists() else {"stacks": {}}
    if args.check:
        same = shipped["stacks"].get(args.stack, {}).get("layer_bytes_per_token") == data["layer_bytes_per_token"]
        print("same as shipped" if same else "differs from shipped: rerun without --check")
        return 0 if same else 1
    shipped.update({"how": HOW, "terms": list(TERMS), "grid": [list(s) for s in GRID]})
    shipped["stacks"][args.stack] = data
    ACTIVATIONS_FILE.write_text(json.dumps(shipped, indent=1) + "\n")
    print(f"wrote the {args.stack} stack to {ACTIVATIONS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
