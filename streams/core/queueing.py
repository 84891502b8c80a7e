"""Queueing theory for capacity planning: measured service rates in, workers and partitions out.

Notation: arrival rate lam (events/s), service rate mu per worker (events/s), c workers, offered
load a = lam/mu (Erlangs), per-worker utilisation rho = a/c. All M/M/c results assume Poisson
arrivals, exponential service times and one shared FCFS queue.

Caveat for Kafka: a keyed partition is served by one worker only, so c workers over evenly loaded
partitions behave more like c separate M/M/1 queues at rate lam/c than like one pooled M/M/c
queue. M/M/c is therefore the optimistic bound and the split model the pessimistic one; `plan`
reports both (`p99` and `p99_split`) and sizes on M/M/c.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

P99 = 0.99


def little_l(lam: float, w: float) -> float:
    """Little's law: L = lam * W (items in the system = arrival rate x time in the system)."""
    return lam * w


def erlang_b(c: int, a: float) -> float:
    """Erlang B blocking probability of M/M/c/c with offered load a.

    Recursion B(0) = 1, B(k) = a B(k-1) / (k + a B(k-1)): every term stays in [0, 1], so unlike
    the textbook a^c/c! / sum(a^k/k!) it neither overflows nor loses precision for large c.
    """
    if c < 0 or a < 0:
        raise ValueError(f"erlang_b needs c >= 0 and a >= 0, got c={c}, a={a}")
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(c: int, a: float) -> float:
    """Erlang C: probability an arrival must wait in M/M/c, C = c B / (c - a (1 - B)).

    Returns 1.0 for a >= c, the limit as the load approaches capacity (every arrival waits).
    """
    if c < 1:
        raise ValueError(f"erlang_c needs c >= 1, got {c}")
    if a >= c:
        return 1.0
    b = erlang_b(c, a)
    return c * b / (c - a * (1.0 - b))


def _hypoexp_survival(r1: float, r2: float, t: float) -> float:
    """P(X + Y > t) for independent X ~ Exp(r1), Y ~ Exp(r2).

    Written as e^{-s t} (1 + s (1 - e^{-d t}) / d) with s the smaller rate and d >= 0 the gap, so it
    neither overflows nor cancels when the rates are close (d -> 0 gives e^{-s t} (1 + s t)).
    """
    s, b = min(r1, r2), max(r1, r2)
    d = b - s
    ramp = t if d * t < 1e-12 else -math.expm1(-d * t) / d
    return math.exp(-s * t) * (1.0 + s * ramp)


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """Steady-state M/M/c metrics; times in seconds when rates are per second."""

    lam: float
    mu: float
    c: int
    rho: float  # per-worker utilisation lam / (c mu)
    p_wait: float  # Erlang C
    lq: float  # mean number waiting
    l: float  # mean number in the system  # noqa: E741 (the textbook's L)
    wq: float  # mean wait before service
    w: float  # mean time in the system (sojourn)

    @property
    def drain_rate(self) -> float:
        """c mu - lam: the rate at which the queue empties; waits are exponential with this rate."""
        return self.c * self.mu - self.lam

    def wait_survival(self, t: float) -> float:
        """P(Wq > t) = C exp(-(c mu - lam) t)."""
        return self.p_wait * math.exp(-self.drain_rate * t)

    def sojourn_survival(self, t: float) -> float:
        """Exact P(W > t) for FCFS M/M/c: W = Wq + S, S ~ Exp(mu) independent of Wq.

        Wq is 0 with probability 1-C and Exp(c mu - lam) with probability C, so
        P(W > t) = (1-C) e^{-mu t} + C P(Exp(c mu - lam) + Exp(mu) > t).
        For c = 1 this reduces to e^{-(mu - lam) t}.
        """
        c_wait = self.p_wait
        return (1.0 - c_wait) * math.exp(-self.mu * t) + c_wait * _hypoexp_survival(
            self.drain_rate, self.mu, t
        )

    def wait_quantile(self, q: float) -> float:
        """t with P(Wq <= t) = q: 0 if q <= 1-C, else ln(C / (1-q)) / (c mu - lam)."""
        _check_quantile(q)
        if q <= 1.0 - self.p_wait:
            return 0.0
        return math.log(self.p_wait / (1.0 - q)) / self.drain_rate

    def sojourn_quantile(self, q: float) -> float:
        """t with P(W <= t) = q, from the exact distribution (`sojourn_survival`) by bisection."""
        _check_quantile(q)
        return _invert_survival(self.sojourn_survival, 1.0 - q, scale=1.0 / self.mu)


def _check_quantile(q: float) -> None:
    if not 0.0 <= q < 1.0:
        raise ValueError(f"quantile must be in [0, 1), got {q}")


def _invert_survival(survival: Callable[[float], float], tail: float, *, scale: float) -> float:
    """Smallest t with survival(t) <= tail, for a continuous decreasing survival with survival(0)=1."""
    if tail >= 1.0:
        return 0.0
    lo, hi = 0.0, scale
    while survival(hi) > tail:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if survival(mid) > tail:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return hi


def mmc(lam: float, mu: float, c: int) -> QueueMetrics:
    """M/M/c: a = lam/mu, rho = a/c, C = erlang_c(c, a),
    Lq = C rho / (1 - rho), Wq = C / (c mu - lam), W = Wq + 1/mu, L = lam W = Lq + a.

    Raises ValueError when rho >= 1: the queue then grows without bound and no steady state exists.
    """
    if lam < 0 or mu <= 0 or c < 1:
        raise ValueError(f"mmc needs lam >= 0, mu > 0, c >= 1; got lam={lam}, mu={mu}, c={c}")
    a = lam / mu
    rho = a / c
    if rho >= 1.0:
        raise ValueError(
            f"unstable queue: utilisation rho = lam/(c*mu) = {lam}/({c}*{mu}) = {rho:.3f} >= 1; "
            f"needs more than {a:.3f} workers"
        )
    p_wait = erlang_c(c, a)
    wq = p_wait / (c * mu - lam)
    w = wq + 1.0 / mu
    return QueueMetrics(
        lam=lam, mu=mu, c=c, rho=rho, p_wait=p_wait, lq=lam * wq, l=little_l(lam, w), wq=wq, w=w
    )


def mm1(lam: float, mu: float) -> QueueMetrics:
    """M/M/1 = M/M/c with c = 1: rho = lam/mu, P(wait) = rho, L = rho/(1-rho), Lq = rho^2/(1-rho),
    W = 1/(mu - lam), Wq = rho/(mu - lam); sojourn time ~ Exp(mu - lam)."""
    return mmc(lam, mu, 1)


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One candidate worker count. Unstable rows have infinite times and p_wait 1."""

    c: int
    rho: float
    p_wait: float
    wq: float
    w: float
    l: float  # noqa: E741 (the textbook's L)
    p99: float  # M/M/c sojourn p99 (pooled queue: optimistic)
    p99_split: float  # c separate M/M/1 queues at lam/c (one per partition owner: pessimistic)
    meets: bool
    stable: bool


@dataclass(frozen=True, slots=True)
class Plan:
    lam: float
    mu: float
    target_p99_s: float
    rows: tuple[PlanRow, ...]
    workers: int | None  # smallest c whose M/M/c p99 sojourn meets the target; None if none does


def _plan_row(lam: float, mu: float, c: int, target_p99_s: float) -> PlanRow:
    try:
        m = mmc(lam, mu, c)
    except ValueError:
        inf = math.inf
        return PlanRow(c, lam / (c * mu), 1.0, inf, inf, inf, inf, inf, meets=False, stable=False)
    p99 = m.sojourn_quantile(P99)
    split = mm1(lam / c, mu).sojourn_quantile(P99)
    return PlanRow(c, m.rho, m.p_wait, m.wq, m.w, m.l, p99, split, meets=p99 <= target_p99_s, stable=True)


def plan(lam: float, mu: float, target_p99_s: float, max_workers: int = 64) -> Plan:
    """Evaluate c = 1..max_workers and pick the smallest c whose p99 sojourn time meets the target.

    The p99 falls as c grows, so the first c that meets the target is the answer; none does when
    the target is below the service time's own p99, ln(100)/mu.
    """
    if target_p99_s <= 0 or max_workers < 1:
        raise ValueError(
            f"plan needs target_p99_s > 0 and max_workers >= 1, got {target_p99_s}, {max_workers}"
        )
    rows = tuple(_plan_row(lam, mu, c, target_p99_s) for c in range(1, max_workers + 1))
    workers = next((r.c for r in rows if r.meets), None)
    return Plan(lam=lam, mu=mu, target_p99_s=target_p99_s, rows=rows, workers=workers)


def partitions_for(workers: int, headroom: float = 2.0) -> int:
    """Partitions to create: the smallest multiple of `workers` >= workers * headroom.

    A partition is the unit of parallelism, its count cannot shrink, and growing it remaps keys
    (breaking per-key order and the co-partitioning of Faust table changelogs), so it is fixed for
    the life of the app and must leave room to add workers. A multiple of today's worker count
    gives every worker the same number of partitions (a balanced load, as the model assumes). No
    power-of-two rounding: Kafka's murmur2-mod-n partitioner spreads keys evenly for any n.
    """
    if workers < 1 or headroom < 1.0:
        raise ValueError(f"partitions_for needs workers >= 1 and headroom >= 1, got {workers}, {headroom}")
    return workers * math.ceil(headroom)
