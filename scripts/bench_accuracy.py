"""Cost-model accuracy on published GPU measurements (the evidence corpus), row by row.

Fits the cost model's constants to every usable row of dstune/calibration/data/evidence/rows.csv,
then refits leaving each row out (and each source out) and predicts what was left out. Prints
predicted vs published samples/s (priors, fitted, left out, source left out), the OOM calls, and:

    fit_geo_factor: X     exp(mean |log(pred / pub)|), rows in the fit, in-sample
    loo_geo_factor: X     the same, each row predicted by a fit without it
    loo_worst_factor: X   exp(max |log(pred / pub)|), left out (loso_*: each source left out)
    pair_loo_geo_factor   exp(mean |log(predicted ratio / published ratio)|) over pairs of rows one source
                          measured on one cluster with one metric, each row left out (pair_loso_*: source left out)
    pair_loo_worst_factor the worst such pair; kendall_tau: rank agreement within those groups
    peak_memory_min_ratio / peak_memory_max_ratio: predicted / published allocated peak (fit; _prior_: priors;
                          the logs are one source, so the source-left-out figure is not separate)

Then the same figures under each reading of what Table 1 does not state (batch size, HE TP size:
`_reproduce.TABLE1_READINGS`), each a full refit, so that no reading is chosen for its score (full mode
only; `--headline-only` skips them). These are model figures computed on this machine's CPU from published
numbers, not GPU measurements. `--write` stores the fit as dstune/calibration/data/evidence/fitted.json.
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


HEADER = (
    f"{'row':28} {'gpu':>12} {'published':>14} {'prior':>6} {'fitted':>6} {'loo':>6} {'loso':>6}  "
    f"{'fact':>5} {'call':>5}  plan rung"
)


def _line(result) -> str:
    """One row: published figure, predicted/published for priors, fit, left out, source left out; OOM call."""
    row, pub = result.case.row, result.published_sps
    published = f"{pub:.4g}/s" if pub else {True: "fits", False: "no fit", None: "-"}[row.fits]
    ratios = " ".join(
        f"{_ratio(c, pub):>6}" for c in (result.prior, result.fitted, result.left_out, result.left_out_source)
    )
    truth = {True: "fits", False: "OOM", None: "-"}[row.known_to_fit]
    mark = "" if row.in_fit else "  (not fitted)"
    gpus = f"{row.gpus}x{row.gpu_type}"
    call = _fits(result.fitted)
    return f"{row.id:28} {gpus:>12} {published:>14} {ratios}  {truth:>5} {call:>5}  {result.fitted.rung}{mark}"


def _points(acc, which: str) -> list:
    from dstune.calibration._pairs import Point, group_of

    points = []
    for r in acc.rows:
        row, choice = r.case.row, getattr(r, which)
        if r.published_sps and row.in_fit and choice is not None and choice.samples_per_s:
            group = group_of(row.source, row.gpu_type, row.gpus, row.metric, row.model)
            points.append(Point(row.id, group, r.published_sps, choice.samples_per_s, row.model, row.step))
    return points


def _interval_lines(acc) -> list[str]:
    """The speedup interval search applies (out of source, independent comparisons, empirical quantile) per
    kind of change, and its pooled coverage of each held-out source's comparisons."""
    from dstune.calibration._conformal import (
        KINDS,
        comparisons,
        consecutive_comparisons,
        kind_interval,
        loso_coverage,
    )

    found = comparisons(_points(acc, "left_out_source"))
    if not found:
        return ["pair_interval: no comparisons"]
    lines = [
        f"pair_interval_{k}_factor: {kind_interval(found, k).factor:.3f}  ({kind_interval(found, k).backing()})"
        for k in KINDS
    ]
    covered, total = loso_coverage(found)
    lines.append(
        f"pair_interval_coverage_loso: {covered / total:.3f}  ({covered:.1f} of {total:.0f} held-out comparisons, "
        "every pair of a group of k weighted 2/k)"
    )
    covered, total = loso_coverage(consecutive_comparisons(_points(acc, "left_out_source")))
    lines.append(
        f"  (one order instead, consecutive rows by id, the former method: {covered / total:.3f}, "
        f"{covered:.0f} of {total:.0f})"
    )
    return lines


def _pair_lines(acc, which: str, label: str) -> list[str]:
    from dstune.calibration._pairs import pair_evidence

    ev = pair_evidence(_points(acc, which))
    if ev is None:
        return [f"pair_{label}: no pairs"]
    return [
        f"pair_{label}_geo_factor: {ev.geo_factor:.3f}  ({ev.pairs} published pairs in {ev.groups} groups)",
        f"pair_{label}_worst_factor: {ev.worst_factor:.3f}",
        f"kendall_tau{'' if label == 'loo' else '_' + label}: {ev.kendall_tau:.3f}",
        f"pair_{label}_interval_factor: {ev.interval_factor:.3f}  ({ev.backing()})",
    ]


def _reading_lines(acc, label: str) -> list[str]:
    """One alternative reading of Table 1's unstated settings: the headline figures it gives."""
    from dstune.calibration._conformal import KINDS, comparisons, kind_interval, loso_coverage

    found = comparisons(_points(acc, "left_out_source"))
    factors = "  ".join(f"pair_interval_{k} x/÷{kind_interval(found, k).factor:.2f}" for k in KINDS) if found else ""
    covered, total = loso_coverage(found) if found else (0, 0)
    right, wrong = acc.oom_calls("fitted")
    return [
        f"reading_{label}: loo_geo_factor {acc.factor('left_out'):.3f}  loo_worst_factor "
        f"{acc.factor('left_out', worst=True):.3f}  loso_geo_factor {acc.factor('left_out_source'):.3f}  "
        f"fit_geo_factor {acc.factor('fitted'):.3f}",
        f"reading_{label}: {factors}  pair_interval_coverage_loso {covered / max(total, 1):.3f}  "
        f"oom_calls_fitted {right} right, {wrong} wrong",
    ]


def _alternative_readings(evaluate_cases, progress) -> list[str]:
    """Table 1 states no batch size and no HE TP size: the accuracy when its rows are read otherwise, each a
    full refit (fit, leave-one-out, leave-one-source-out) like the headline."""
    from dstune.calibration._evidence import load_corpus
    from dstune.calibration._reproduce import TABLE1_READINGS, reproduce

    lines = []
    for label, meaning in TABLE1_READINGS.items():
        if label == "default":
            continue
        progress(f"reading {label}")
        acc = evaluate_cases([reproduce(row, label) for row in load_corpus()])
        lines.append(f"  ({label}: Table 1 read at {meaning})")
        lines += _reading_lines(acc, label)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="store the fit as the shipped fitted.json")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--headline-only",
        action="store_true",
        help="skip the alternative readings of Table 1 (each is a full refit, about as long as the headline)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1-2 optimizer evaluations per fit: every code path, figures not meaningful",
    )
    args = parser.parse_args(argv)
    if args.quick and args.write:
        parser.error("--quick fits are not worth shipping: drop --write")

    from dstune.calibration._accuracy import evaluate
    from dstune.calibration._evidence import corpus_version, load_corpus, load_sources
    from dstune.calibration._reproduce import reproduce
    from dstune.calibration._shipped import write_fitted

    start = time.perf_counter()
    cases = [reproduce(row) for row in load_corpus()]

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"  [{time.perf_counter() - start:5.0f}s] {message}", file=sys.stderr)

    budget = {"loo_nfev": 1, "loso_nfev": 1, "full_nfev": 2} if args.quick else {}
    acc = evaluate(cases, progress=progress, **budget)

    print(f"evidence corpus {corpus_version()}: {len(cases)} rows from {len(load_sources())} sources")
    for case in cases:
        if case.skipped:
            print(f"  skipped {case.row.id}: {case.skipped}")
    print("\npredicted / published samples/s (fitted and left out); fits / OOM call (fitted)")
    print(HEADER)
    for result in acc.rows:
        print(_line(result))
    print("\nper GPU generation (left out): rows, geometric error factor, 90% interval factor")
    for gen, fam in acc.families.items():
        print(f"  {gen:8} rows {fam.rows:3}  loo x{fam.loo_geo_factor:.2f}  interval x/÷{fam.interval_factor:.2f}")
    print(f"  no rows   interval x/÷{acc.no_rows_interval_factor:.2f}")
    print("\npublished peak allocated (torch max_memory_allocated) vs predicted, GiB")
    for row_id, published, prior, fitted in acc.peaks():
        print(f"  {row_id:28} published {published:6.2f}  prior {prior:6.2f}  fitted {fitted:6.2f}")
    print("\npublished phase times vs predicted, s")
    for row_id, phases, published, prior, fitted in acc.phase_times():
        print(f"  {row_id:28} {phases:32} published {published:6.2f}  prior {prior:6.2f}  fitted {fitted:6.2f}")
    for which in ("prior", "fitted", "left_out"):
        right, wrong = acc.oom_calls(which)
        print(f"oom_calls_{which}: {right} right, {wrong} wrong")
    print(f"prior_geo_factor: {acc.factor('prior'):.3f}")
    print(f"loso_geo_factor: {acc.factor('left_out_source'):.3f}")
    print(f"loso_worst_factor: {acc.factor('left_out_source', worst=True):.3f}")
    print(f"fit_geo_factor: {acc.factor('fitted'):.3f}")
    print(f"loo_geo_factor: {acc.factor('left_out'):.3f}")
    print(f"loo_worst_factor: {acc.factor('left_out', worst=True):.3f}")
    for line in _pair_lines(acc, "left_out", "loo") + _pair_lines(acc, "left_out_source", "loso"):
        print(line)
    for line in _interval_lines(acc):
        print(line)
    peaks = acc.peaks()
    if peaks:
        fit_ratios = [fitted / published for _, published, _, fitted in peaks]
        prior_ratios = [prior / published for _, published, prior, _ in peaks]
        print(f"peak_memory_min_ratio: {min(fit_ratios):.3f}")
        print(f"peak_memory_max_ratio: {max(fit_ratios):.3f}")
        print(f"peak_memory_prior_min_ratio: {min(prior_ratios):.3f}")
        print(f"peak_memory_prior_max_ratio: {max(prior_ratios):.3f}")
    if args.write:
        print(f"wrote {write_fitted(acc)}")
    print("\nTable 1 under each reading of what it does not state (headline above: 'default')")
    for line in _reading_lines(acc, "default"):
        print(line)
    if args.quick or args.headline_only:
        print("alternative readings: full mode only (each is a full refit); rerun without --quick/--headline-only")
    else:
        for line in _alternative_readings(lambda cases: evaluate(cases, progress=progress, **budget), progress):
            print(line)
    seconds = time.perf_counter() - start
    if args.quick:
        print("(--quick: fits stopped after 1-2 evaluations; these figures check the code path, not the model)")
    print(
        f"(model figures from published rows, computed on this machine's CPU in {seconds:.0f} s; not GPU measurements)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
