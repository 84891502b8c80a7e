"""Queueing formulas against published values, identities, an M/M/c simulation, and the planner."""

from __future__ import annotations

import heapq
import math
import random

import pytest

from streams.core.queueing import (
    P99,
    erlang_b,
    erlang_c,
    little_l,
    mm1,
    mmc,
    partitions_for,
    plan,
)


def test_erlang_c_published_value() -> None:
    # 10 Erlangs offered to 14 agents: P(wait) = 0.1741 (standard Erlang C table value).
    assert erlang_c(14, 10.0) == pytest.approx(0.1741, abs=5e-5)


def test_erlang_b_published_value() -> None:
    assert erlang_b(10, 5.0) == pytest.approx(0.01838, abs=5e-6)


def test_erlang_b_trivial_cases() -> None:
    assert erlang_b(0, 3.0) == 1.0
    assert erlang_b(1, 1.0) == pytest.approx(0.5)
    assert erlang_b(5, 0.0) == 0.0


def test_erlang_c_is_stable_for_large_systems_and_saturates_at_capacity() -> None:
    p = erlang_c(2000, 1950.0)  # a^c / c! would overflow a float long before this
    assert 0.0 < p < 1.0
    assert erlang_c(4, 4.0) == 1.0
    assert erlang_c(4, 0.0) == 0.0


def test_mm1_published_values() -> None:
    m = mm1(0.8, 1.0)
    assert m.rho == pytest.approx(0.8)
    assert m.p_wait == pytest.approx(0.8)
    assert m.l == pytest.approx(4.0)
    assert m.w == pytest.approx(5.0)
    assert m.lq == pytest.approx(3.2)
    assert m.wq == pytest.approx(4.0)


def test_mm1_sojourn_time_is_exponential() -> None:
    m = mm1(0.8, 1.0)
    for q in (0.5, 0.9, 0.99):
        assert m.sojourn_quantile(q) == pytest.approx(-math.log(1.0 - q) / 0.2, rel=1e-9)
    assert m.sojourn_survival(3.0) == pytest.approx(math.exp(-0.2 * 3.0))


@pytest.mark.parametrize(("lam", "mu"), [(0.3, 1.0), (5.0, 7.5), (99.0, 100.0)])
def test_mmc_with_one_server_is_mm1(lam: float, mu: float) -> None:
    m, one = mmc(lam, mu, 1), mm1(lam, mu)
    rho = lam / mu
    assert m == one
    assert m.p_wait == pytest.approx(rho)
    assert m.l == pytest.approx(rho / (1 - rho))
    assert m.w == pytest.approx(1 / (mu - lam))


@pytest.mark.parametrize(("lam", "mu", "c"), [(10.0, 1.0, 14), (90.0, 12.0, 8), (1.0, 3.0, 2)])
def test_littles_law_holds_for_mmc(lam: float, mu: float, c: int) -> None:
    m = mmc(lam, mu, c)
    assert m.l == pytest.approx(little_l(lam, m.w)) == pytest.approx(lam * m.w)
    assert m.lq == pytest.approx(lam * m.wq)
    assert m.l == pytest.approx(m.lq + lam / mu)  # L = Lq + offered load (mean busy servers)


def test_wait_quantile() -> None:
    m = mmc(10.0, 1.0, 14)
    assert m.wait_quantile(0.5) == 0.0  # more than half of arrivals never wait (C = 0.17)
    t = m.wait_quantile(0.99)
    assert t > 0 and m.wait_survival(t) == pytest.approx(0.01)


def test_sojourn_quantile_inverts_the_survival_function() -> None:
    m = mmc(10.0, 1.0, 14)
    for q in (0.0, 0.5, 0.9, P99, 0.9999):
        t = m.sojourn_quantile(q)
        assert m.sojourn_survival(t) == pytest.approx(1.0 - q, rel=1e-9)
    assert m.sojourn_quantile(P99) > m.wait_quantile(P99)


def test_sojourn_quantile_matches_an_fcfs_simulation() -> None:
    lam, mu, c, customers = 10.0, 1.0, 14, 120_000
    rng = random.Random(42)
    free_at = [0.0] * c  # min-heap of the times each server becomes free
    clock, sojourns = 0.0, []
    for _ in range(customers):
        clock += rng.expovariate(lam)
        start = max(clock, heapq.heappop(free_at))
        done = start + rng.expovariate(mu)
        heapq.heappush(free_at, done)
        sojourns.append(done - clock)
    sojourns = sorted(sojourns[10_000:])  # drop the warm-up from an empty system
    m = mmc(lam, mu, c)
    for q in (0.5, 0.9, P99):
        assert sojourns[int(q * len(sojourns))] == pytest.approx(m.sojourn_quantile(q), rel=0.06)
    assert sum(sojourns) / len(sojourns) == pytest.approx(m.w, rel=0.03)


@pytest.mark.parametrize(("lam", "mu", "c"), [(1.0, 1.0, 1), (2.0, 1.0, 1), (30.0, 10.0, 3)])
def test_unstable_systems_raise(lam: float, mu: float, c: int) -> None:
    with pytest.raises(ValueError, match="unstable"):
        mmc(lam, mu, c)


def test_invalid_arguments_raise() -> None:
    for args in ((-1.0, 1.0, 1), (1.0, 0.0, 1), (1.0, 1.0, 0)):
        with pytest.raises(ValueError):
            mmc(*args)
    with pytest.raises(ValueError):
        mm1(0.5, 1.0).sojourn_quantile(1.0)


def test_idle_system() -> None:
    m = mmc(0.0, 2.0, 3)
    assert (m.rho, m.p_wait, m.lq, m.l, m.wq) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert m.w == pytest.approx(0.5)


def test_plan_picks_the_smallest_worker_count_meeting_the_target() -> None:
    p = plan(lam=100.0, mu=12.0, target_p99_s=0.5)
    assert p.workers is not None
    chosen = p.rows[p.workers - 1]
    assert chosen.c == p.workers and chosen.meets and chosen.stable
    assert chosen.p99 <= 0.5
    assert not any(r.meets for r in p.rows[: p.workers - 1])
    # 100/12 = 8.33 Erlangs: eight or fewer workers cannot keep up at all.
    assert [r.stable for r in p.rows[:9]] == [False] * 8 + [True]
    assert all(math.isinf(r.p99) for r in p.rows[:8])
    # Split (one queue per partition owner) is never better than pooled.
    assert all(r.p99_split >= r.p99 - 1e-12 for r in p.rows if r.stable)


def test_plan_returns_none_when_even_an_idle_worker_is_too_slow() -> None:
    # The service time alone has p99 ln(100)/mu = 0.46 s at mu = 10/s.
    p = plan(lam=5.0, mu=10.0, target_p99_s=0.4, max_workers=16)
    assert p.workers is None and len(p.rows) == 16


def test_more_load_never_needs_fewer_workers() -> None:
    needed = [plan(lam, mu=10.0, target_p99_s=0.6).workers for lam in range(1, 400, 7)]
    assert None not in needed
    assert needed == sorted(needed)
    assert needed[-1] > needed[0]


def test_partitions_for() -> None:
    assert partitions_for(1) == 2
    assert partitions_for(3) == 6
    assert partitions_for(3, headroom=1.5) == 6
    assert partitions_for(4, headroom=1.0) == 4
    with pytest.raises(ValueError):
        partitions_for(0)
