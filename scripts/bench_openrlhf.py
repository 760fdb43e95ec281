"""How fast the OpenRLHF search goes: candidate generation with OpenRLHF's checks, then vectorised scoring.

The job is `dstune search --framework openrlhf --model llama-3-8b --gpus 8 --algo grpo` (the shipped DAPO
example's job on 8 x H100-80G) over search_spaces/openrlhf.yaml. Prints the median of several runs of
each part, ending with `candidates_per_s: N` (scored plans per second of the whole search); `--explore
lora,batch,samples` then times the search of every other job class once (`explore_s`). CPU figures: they
time dstune's code, not OpenRLHF on a GPU.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

from dstune.catalog import load_gpu, load_model, make_cluster
from dstune.frameworks.openrlhf import baseline_for
from dstune.frameworks.openrlhf._cost import estimate_openrlhf
from dstune.frameworks.openrlhf._explore import explore_openrlhf, load_explore, parse_explore
from dstune.frameworks.openrlhf._search import candidates, load_space

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "openrlhf.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--explore", default="", help="also time --explore with these names, once")
    args = parser.parse_args()
    model = load_model("llama-3-8b")
    cluster = make_cluster(load_gpu("H100-80G"), 8)
    example = baseline_for("llama-3-8b", 8, "group_norm")
    assert example is not None
    base, space = example.plan(), load_space(SPACE)
    gen, score = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        plans, refused = candidates(base, 8, 8, space)
        middle = time.perf_counter()
        estimate_openrlhf(plans, model, model, cluster)
        gen.append(middle - start)
        score.append(time.perf_counter() - middle)
    total = statistics.median(g + s for g, s in zip(gen, score, strict=True))
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"candidates: {len(plans)} scored, {refused} refused by OpenRLHF's checks")
    print(f"generate_and_check_s: {statistics.median(gen):.3f}")
    print(f"score_s: {statistics.median(score):.3f}")
    print(f"candidates_per_s: {len(plans) / total:,.0f}")
    if args.explore:
        names = parse_explore(args.explore)
        start = time.perf_counter()
        alternatives = explore_openrlhf(base, names, load_explore(SPACE), model, model, cluster, space)
        print(f"explore: {len(alternatives)} other job classes ({args.explore})")
        print(f"explore_s: {time.perf_counter() - start:.1f}")


if __name__ == "__main__":
    main()
