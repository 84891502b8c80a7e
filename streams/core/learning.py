"""Learning rules: fold one judged decision (a Transition) into a decision-table row, at most once."""

from __future__ import annotations

from streams.core.scenario import Transition
from streams.core.table import Row


def already_applied(
    row: Row,
    t: Transition,
    source: str | None = None,
    offset: int | None = None,
    by_origin: bool = True,
) -> bool:
    """True if this transition is already in the row.

    Three checks because there are three ways to see a transition twice: a replay of the learning
    topic after a crash (caught by the per-partition offset); the same input record judged again
    after a crash upstream (its transition was sent, its "joined" mark was not): while a row
    receives the transitions judged by one input partition in that partition's order, one whose
    origin offset is not past the last applied is a repeat; and the same decision judged again from
    another record (caught by the recent decision ids).

    `by_origin=False` drops the origin check, for a learner that recognises repeats exactly (the
    live one, see agents/learn.py): after a crash the order does not hold. A batch whose
    transitions went out but whose table changes did not is handled again, and by then more of its
    outcomes have arrived: the second pass judges decisions the first did not, below the origin
    offsets the first one left in the rows (measured: 8 updates lost in one restart test).
    """
    if source is not None and offset is not None:
        last = row.applied.get(source)
        if last is not None and offset <= last:
            return True
    if by_origin and t.origin is not None:
        last = row.origins.get(t.origin)
        if last is not None and t.origin_offset <= last:
            return True
    return row.seen(t.decision_id)


def apply(
    row: Row,
    t: Transition,
    action_index: int,
    *,
    alpha: float,
    gamma: float = 0.0,
    next_max: float = 0.0,
    source: str | None = None,
    offset: int | None = None,
    by_origin: bool = True,
) -> bool:
    """Apply `t` to `row` in place; False (and no change) if it was already applied.

    Q update: q += step * (reward + gamma * next_max - q) with step = max(1/n, alpha). Rewards
    such as fraud losses are heavy-tailed: from a zero start a constant small alpha takes ~1/alpha
    updates to reach the right scale, so the first updates use the sample average (1/n), which is
    unbiased from the first observation; but 1/n alone weighs the first reward as much as the
    latest one and never forgets, so once 1/n drops below alpha the step stays at alpha
    (exponential recency weighting) and the values track drift.

    The Welford statistics (n, mean, m2) are of the raw reward, not the bootstrapped target: they
    feed Thompson sampling, a bandit. `source`/`offset` identify the learning-topic record
    ("risk.learning:3", 1234) for replay idempotence.
    """
    if already_applied(row, t, source, offset, by_origin):
        return False
    update_values(row, action_index, t.reward, alpha, gamma, next_max)
    row.version += 1
    row.remember(t.decision_id)
    if source is not None and offset is not None:
        row.applied[source] = offset
    if by_origin and t.origin is not None:
        row.origins[t.origin] = t.origin_offset
    return True


def update_values(row: Row, a: int, reward: float, alpha: float, gamma: float, next_max: float) -> None:
    """The value update of `apply` alone (no idempotence bookkeeping): the replay's columnar path,
    which joins each decision exactly once by construction, calls it directly."""
    n = row.n[a] + 1
    row.n[a] = n
    mean = row.mean[a]
    delta = reward - mean
    mean += delta / n
    row.mean[a] = mean
    row.m2[a] += delta * (reward - mean)
    step = max(1.0 / n, alpha)
    q = row.q[a]
    row.q[a] = q + step * (reward + gamma * next_max - q)


def next_max_of(row: Row | None) -> float:
    """max_a Q(s', a) for the Q-learning target; pass None for a terminal or never-learned state (worth 0)."""
    return 0.0 if row is None else max(row.q)
