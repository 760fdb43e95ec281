"""Cost-model accuracy on published GPU measurements (the evidence corpus), row by row.

Fits the cost model's constants to every usable row of dstune/calibration/data/evidence/rows.csv,
then refits leaving each row out (and each source out) and predicts what was left out. Prints
predicted vs published samples/s (priors, fitted, left out, source left out), the OOM calls, and:

    fit_geo_factor: X     exp(mean |log(pred / pub)|), rows in the fit, in-sample
    loo_geo_factor: X     the same, each row predicted by a fit without it
    loo_worst_factor: X   exp(max |log(pred / pub)|), left out

These are model figures computed on this machine's CPU from published numbers, not GPU
measurements. `--write` stores the fit as dstune/calibration/data/evidence/fitted.json.
"""

from __future__ import annotations

import argparse
import sys
import time


def _ratio(choice, published: float | None) -> str:
    if choice is None or not published:
        return "-"
    return f"{choice.samples_per_s / published:5.2f}"


def _fits(choice) -> str:
    return "-" if choice is None else ("fits" if choice.fits else "OOM")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="store the fit as the shipped fitted.json")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)

    from dstune.calibration._accuracy import evaluate
    from dstune.calibration._evidence import corpus_version, load_corpus, load_sources
    from dstune.calibration._reproduce import reproduce
    from dstune.calibration._shipped import write_fitted

    start = time.perf_counter()
    cases = [reproduce(row) for row in load_corpus()]
    progress = None if args.quiet else (lambda m: print(f"  [{time.perf_counter() - start:5.0f}s] {m}", file=sys.stderr))
    acc = evaluate(cases, progress=progress)

    print(f"evidence corpus {corpus_version()}: {len(cases)} rows from {len(load_sources())} sources")
    for case in cases:
        if case.skipped:
            print(f"  skipped {case.row.id}: {case.skipped}")
    header = f"{'row':28} {'gpu':>12} {'published':>14} {'prior':>6} {'fitted':>6} {'loo':>6} {'loso':>6}  {'fact':>5} {'call':>5}  plan rung"
    print("\npredicted / published samples/s (fitted and left out); fits / OOM call (fitted)")
    print(header)
    for r in acc.rows:
        row = r.case.row
        published = f"{r.published_sps:.4g}/s" if r.published_sps else ("fits" if row.fits else "no fit" if row.fits is not None else "-")
        mark = "" if row.in_fit else "  (not fitted)"
        truth = {True: "fits", False: "OOM", None: "-"}[row.known_to_fit]
        print(f"{row.id:28} {str(row.gpus) + 'x' + row.gpu_type:>12} {published:>14} {_ratio(r.prior, r.published_sps):>6} "
              f"{_ratio(r.fitted, r.published_sps):>6} {_ratio(r.left_out, r.published_sps):>6} "
              f"{_ratio(r.left_out_source, r.published_sps):>6}  {truth:>5} {_fits(r.fitted):>5}  {r.fitted.rung}{mark}")
    print("\nper GPU generation (left out): rows, geometric error factor, 90% interval factor")
    for gen, fam in acc.families.items():
        print(f"  {gen:8} rows {fam.rows:3}  loo x{fam.loo_geo_factor:.2f}  interval x/÷{fam.interval_factor:.2f}")
    print(f"  no rows   interval x/÷{acc.no_rows_interval_factor:.2f}")
    for which in ("prior", "fitted", "left_out"):
        right, wrong = acc.oom_calls(which)
        print(f"oom_calls_{which}: {right} right, {wrong} wrong")
    print(f"prior_geo_factor: {acc.factor('prior'):.3f}")
    print(f"loso_geo_factor: {acc.factor('left_out_source'):.3f}")
    print(f"fit_geo_factor: {acc.factor('fitted'):.3f}")
    print(f"loo_geo_factor: {acc.factor('left_out'):.3f}")
    print(f"loo_worst_factor: {acc.factor('left_out', worst=True):.3f}")
    print(f"(model figures from published rows on this machine's CPU in {time.perf_counter() - start:.0f} s, not GPU measurements)")
    if args.write:
        print(f"wrote {write_fitted(acc)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
