"""The soak test's verdict rules (perf/soak.py): RSS growth and lag trend, on synthetic series."""

from __future__ import annotations

import math
import random

import pytest

from perf.soak import Rules, judge, lag_check, rss_check, slope

TIMES = [5.0 * i for i in range(121)]  # 10 minutes, a sample every 5 s


def test_slope_of_a_line_and_degenerate_inputs() -> None:
    assert slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert slope([1.0], [5.0]) == 0.0
    assert slope([2, 2, 2], [1, 2, 3]) == 0.0


def test_flat_rss_after_warm_up_passes() -> None:
    rng = random.Random(1)
    # fast warm-up to ~500 MB in the first minutes, then flat with allocator noise
    rss = [500.0 * (1 - math.exp(-t / 60.0)) + 100.0 + rng.gauss(0, 5) for t in TIMES]
    check = rss_check(TIMES, rss)
    assert check.ok is True, check.reason


def test_leaking_rss_fails() -> None:
    rss = [400.0 + 0.05 * t for t in TIMES]  # +180 MB/h on ~420 MB: ~40%/h
    check = rss_check(TIMES, rss)
    assert check.ok is False
    assert check.details["slope_mb_per_hour"] == pytest.approx(180.0, rel=1e-6)
    assert "RSS grows" in check.reason


def test_small_process_growth_below_the_absolute_floor_passes() -> None:
    rss = [60.0 + 0.005 * t for t in TIMES]  # 18 MB/h: 28%/h of a 60 MB process, under 50 MB/h
    assert rss_check(TIMES, rss).ok is True
    assert rss_check(TIMES, rss, Rules(rss_min_mb_per_hour=10.0)).ok is False


def test_growth_in_the_first_half_only_is_warm_up() -> None:
    rss = [200.0 + min(t, 290.0) for t in TIMES]  # grows 290 MB, then flat from minute 5
    assert rss_check(TIMES, rss).ok is True


def test_stable_noisy_lag_passes() -> None:
    rng = random.Random(2)
    lag = [max(0.0, 3000 + rng.gauss(0, 800)) for _ in TIMES]
    check = lag_check(TIMES, lag, Rules(lag_margin_records=5 * 2000))
    assert check.ok is True, check.reason


def test_rising_lag_fails() -> None:
    lag = [50.0 * t for t in TIMES]  # 50 records/s more arriving than served
    check = lag_check(TIMES, lag, Rules(lag_margin_records=5 * 2000))
    assert check.ok is False
    assert check.details["slope_last_per_s"] == pytest.approx(50.0)


def test_lag_that_rose_and_recovered_passes() -> None:
    # a backlog in the middle third (a neighbour's burst), worked off in the last third
    lag = [20_000.0 if 200 <= t < 400 else 1_000.0 for t in TIMES]
    assert lag_check(TIMES, lag, Rules(lag_margin_records=10_000)).ok is True


def test_lag_high_in_last_third_but_falling_passes() -> None:
    lag = [1_000.0 if t < 400 else 40_000.0 - 50.0 * (t - 400) for t in TIMES]
    check = lag_check(TIMES, lag, Rules(lag_margin_records=10_000))
    assert check.details["mean_last"] > check.details["mean_middle"] + check.details["margin"]
    assert check.ok is True  # above the margin, but going down: the worker is catching up


def test_too_few_samples_are_inconclusive() -> None:
    verdict = judge([0.0, 5.0, 10.0], [100, 100, 100], [0, 0, 0])
    assert verdict.status == "INCONCLUSIVE"
    assert verdict.exit_code == 2


def test_judge_combines_checks() -> None:
    flat = [500.0] * len(TIMES)
    rising = [50.0 * t for t in TIMES]
    assert judge(TIMES, flat, [100.0] * len(TIMES)).status == "PASS"
    verdict = judge(TIMES, flat, rising, Rules(lag_margin_records=1000))
    assert verdict.status == "FAIL"
    assert verdict.exit_code == 1
    assert [c.name for c in verdict.failed] == ["lag"]


def test_state_time_to_lives_follow_the_soaks_clock() -> None:
    """At 1,000 events/s the generator's event time runs 20x: 120 wall seconds are 2,400 of it."""
    from perf.soak import SoakConfig, state_ttls

    assert state_ttls(SoakConfig(state_ttl_s=120.0), 1_000.0) == {
        "pending_ttl_s": 2_400.0, "early_outcome_ttl_s": 120.0, "learned_ttl_s": 120.0
    }  # fmt: skip
    assert state_ttls(SoakConfig(state_ttl_s=0.0), 1_000.0) == {}
