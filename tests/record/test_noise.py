"""Measured figures carry their noise: t-intervals over steps and over paired runs, and a speedup whose
interval includes 1 is never called one."""

from __future__ import annotations

import math

import pytest

from dstune.plan import make_plan, plan_to_dict
from dstune.record import Basis, Figures, Status, TrialRow, paired_ratio, run_ratio, throughput_interval
from dstune.search import choose

STEPS = (48.50, 56.66, 76.38, 89.44, 89.95)
"""Wall seconds of the 5 measured steps of a real tiny-opt SFT trial (2 ranks, DS_ACCELERATOR=cpu) on this
project's loaded 2-core machine: the spread a single search trial really sees."""


def test_throughput_interval_is_a_t_interval_over_the_steps_log_times() -> None:
    sps = 32 / (sum(STEPS) / len(STEPS))
    lo, hi = throughput_interval(sps, STEPS)
    logs = [math.log(t) for t in STEPS]
    mean = sum(logs) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 4)
    half = 2.1318 * sd / math.sqrt(5)  # t(0.95, df=4)
    assert lo == pytest.approx(sps * math.exp(-half), rel=1e-4)
    assert hi == pytest.approx(sps * math.exp(half), rel=1e-4)
    assert lo < sps < hi and hi / lo > 1.4  # 30%-plus spread between steps: a wide interval, not a point
    assert throughput_interval(sps, STEPS[:1]) is None  # one step has no spread to speak of


def test_paired_ratio_uses_the_spread_between_pairs() -> None:
    steady = paired_ratio([(1.0, 1.20), (1.1, 1.32), (0.9, 1.08)])  # every pair 1.20x
    assert steady is not None and steady.value == pytest.approx(1.2)
    assert steady.interval == pytest.approx((1.2, 1.2))
    noisy = paired_ratio([(1.0, 1.30), (1.0, 0.95), (1.0, 1.10)])
    assert noisy is not None and noisy.interval[0] < 1.0 < noisy.interval[1]
    assert "3 interleaved" in noisy.backing
    assert paired_ratio([(1.0, 1.2)]) is None


def test_one_run_each_combines_their_intervals_and_says_run_noise_is_not_sampled() -> None:
    ratio = run_ratio(1.0, (0.9, 1.1), 1.5, (1.4, 1.6), "trials 0 and 3")
    assert ratio is not None and ratio.value == pytest.approx(1.5)
    half = math.hypot(math.log(1.1 / 0.9) / 2, math.log(1.6 / 1.4) / 2)
    assert ratio.interval == pytest.approx((1.5 * math.exp(-half), 1.5 * math.exp(half)))
    assert "run-to-run noise not sampled" in ratio.backing
    assert run_ratio(1.0, None, 1.5, (1.4, 1.6), "x") is None


def _row(number: int, source: str, values: dict, sps: float, spread: float, **details) -> TrialRow:
    measured = Figures(
        basis=Basis.MEASURED,
        samples_per_s=sps,
        tokens_per_s=sps * 16,
        gpu_peak_bytes=None,
        step_s=4 / sps,
        samples_per_s_interval=(sps / spread, sps * spread),
    )
    return TrialRow(number, Status.OK, source, dict(values), None, measured, None, details=details)


def _study(pairs: list[tuple[float, float]]) -> list[TrialRow]:
    base = plan_to_dict(make_plan("sft", {"per_device_train_batch_size": 1, "gradient_accumulation_steps": 4}))
    pick = plan_to_dict(make_plan("sft", {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1}))
    rows = [_row(0, "baseline", base, 1.0, 1.02), _row(1, "sampler", pick, 1.4, 1.02)]
    for i, (b, p) in enumerate(pairs, start=1):
        rows.append(_row(len(rows), "confirm", base, b, 1.02, round=i))
        rows.append(_row(len(rows), "confirm", pick, p, 1.02, round=i))
    return rows


def _headline(rows: list[TrialRow]):
    return choose(rows, rows[0], rows[0].values, "sft", 1, 80 * 2**30).headline


def test_a_profiled_speedup_comes_from_the_confirmation_pairs() -> None:
    head = _headline(_study([(1.0, 1.25), (1.05, 1.30), (0.95, 1.20)]))
    assert head.pick.number == 1  # confirmation runs are never ranked as plans of their own
    s = head.speedup
    assert s.basis == Basis.MEASURED and s.interval is not None and s.interval[0] > 1.0
    assert s.value == pytest.approx((1.25 * 1.30 / 1.05 * 1.20 / 0.95) ** (1 / 3))  # not the search's 1.40x
    assert "faster" in s.versus("the baseline") and "t-interval over 3 interleaved" in s.backing
    assert s.to_json()["interval"] == list(s.interval) and s.to_json()["tie"] is False


def test_an_interval_that_includes_one_is_not_called_a_speedup() -> None:
    head = _headline(_study([(1.0, 1.30), (1.0, 0.92), (1.0, 1.12)]))  # the search saw 1.40x
    s = head.speedup
    assert s.tie and s.to_json()["tie"] is True
    text = s.versus("the baseline")
    assert "no measurable difference" in text and "faster than" not in text
    assert f"{s.interval[0]:.2f}-{s.interval[1]:.2f}x" in text


def test_without_confirmation_the_search_trials_steps_give_the_interval_and_say_so() -> None:
    s = _headline(_study([])).speedup
    assert s.value == pytest.approx(1.4) and s.interval is not None
    assert "not re-measured" in s.backing and "run-to-run noise not sampled" in s.backing
