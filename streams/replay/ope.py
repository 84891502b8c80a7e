"""Off-policy evaluation: the value of a new policy estimated from decisions another policy logged.

The live decide agent logs each action with its propensity (the probability its policy had of
choosing it); that is what makes these estimators possible:

- IPS: mean of w * r with w = pi(a|x) / p(a|x): unbiased when p > 0 wherever pi > 0, high variance.
- SNIPS: sum(w * r) / sum(w): slightly biased, far less variance when weights are large.
- DR (doubly robust): a direct model q(x, a) fitted on the log, corrected by the weighted residual:
  mean of sum_a pi(a|x) q(x, a) + w * (r - q(x, a)). Unbiased if either the propensities or the
  model are right, and lower variance than IPS when the model is decent.

The target policy is given per sample either as its action (a sampled or deterministic policy:
the indicator 1[a_target == a_logged] is an unbiased estimate of pi(a_logged|x)) or as its full
probability vector. The direct model is a per-(context, action) mean reward, falling back to the
action's mean, then to the overall mean, for pairs the log never saw.

Confidence intervals: the normal approximation (closed form, no randomness) or a percentile
bootstrap with a fixed seed, so the same log always gives the same interval.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

Target = Sequence[int] | Sequence[Sequence[float]]


@dataclass(frozen=True, slots=True)
class Estimate:
    value: float
    low: float
    high: float
    n: int

    def to_dict(self, digits: int = 6) -> dict[str, Any]:
        return {"value": round(self.value, digits), "low": round(self.low, digits),
                "high": round(self.high, digits), "n": self.n}  # fmt: skip

    def covers(self, truth: float) -> bool:
        return self.low <= truth <= self.high


@dataclass(frozen=True, slots=True)
class LoggedData:
    """One logged decision per index: what the logging policy saw, did, with what probability, and got."""

    contexts: Sequence[Hashable]
    actions: Sequence[int]
    propensities: Sequence[float]
    rewards: Sequence[float]

    def __post_init__(self) -> None:
        n = len(self.actions)
        if not len(self.contexts) == len(self.propensities) == len(self.rewards) == n:
            raise ValueError("contexts, actions, propensities and rewards must have the same length")
        p = np.asarray(self.propensities, dtype=np.float64)
        if not ((p > 0.0) & (p <= 1.0)).all():
            raise ValueError("propensities must be in (0, 1]")


class DirectModel:
    """Mean reward per (context, action), with fallbacks for pairs the log never saw, as a table:
    one row per distinct context (`codes`: each sample's row), one column per action."""

    def __init__(self, log: LoggedData) -> None:
        index: dict[Hashable, int] = {}
        contexts = log.contexts
        if isinstance(contexts, np.ndarray) and contexts.dtype.kind in "iu":  # already codes: one sort
            distinct, self.codes = np.unique(contexts, return_inverse=True)
            index = dict(zip(distinct.tolist(), range(len(distinct)), strict=True))
        else:
            self.codes = np.fromiter(
                (index.setdefault(x, len(index)) for x in contexts), dtype=np.int64, count=len(contexts)
            )
        actions = np.asarray(log.actions, dtype=np.int64)
        rewards = np.asarray(log.rewards, dtype=np.float64)
        width = int(actions.max(initial=0)) + 1
        cells = self.codes * width + actions
        size = len(index) * width
        # bincount adds the weights one by one in sample order: the same sums as a running total.
        sums = np.bincount(cells, weights=rewards, minlength=size)
        counts = np.bincount(cells, minlength=size)
        by_action = np.bincount(actions, weights=rewards, minlength=width)
        action_counts = np.bincount(actions, minlength=width)
        n = len(rewards)
        overall = math.fsum(rewards.tolist()) / n if n else 0.0
        action_mean = np.where(action_counts > 0, by_action / np.maximum(action_counts, 1), overall)
        cell_mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.tile(action_mean, len(index)))
        self.width, self.overall, self.action_mean = width, overall, action_mean
        self.table = cell_mean.reshape(len(index), width)
        self.index = index

    def __call__(self, context: Hashable, action: int) -> float:
        row = self.index.get(context)
        if not 0 <= action < self.width:
            return self.overall
        return float(self.action_mean[action] if row is None else self.table[row, action])

    def at(self, actions: np.ndarray) -> np.ndarray:
        """q(x_i, actions[i]) for every sample i (actions the log never took: the overall mean)."""
        known = (actions >= 0) & (actions < self.width)
        values = self.table[self.codes, np.where(known, actions, 0)]
        return np.where(known, values, self.overall)


def _target_terms(log: LoggedData, target: Target, model: DirectModel) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: pi(a_logged | x) and sum_a pi(a|x) q(x, a)."""
    actions = np.asarray(log.actions, dtype=np.int64)
    if isinstance(target[0], int | np.integer):  # an action per sample
        chosen = np.asarray(target, dtype=np.int64)
        return (chosen == actions).astype(np.float64), model.at(chosen)
    pi_logged: list[float] = []
    dm: list[float] = []
    for x, a, t in zip(log.contexts, log.actions, target, strict=True):
        if isinstance(t, int):
            pi_logged.append(1.0 if t == a else 0.0)
            dm.append(model(x, t))
        else:
            pi_logged.append(float(t[a]))
            dm.append(math.fsum(p * model(x, b) for b, p in enumerate(t) if p))
    return np.array(pi_logged), np.array(dm)


def _normal(terms: np.ndarray, z: float, value: float | None = None) -> Estimate:
    n = len(terms)
    mean = _fsum(terms) / n if value is None else value
    if n < 2:
        return Estimate(mean, mean, mean, n)
    centre = _fsum(terms) / n
    var = _fsum((terms - centre) ** 2) / (n - 1)
    half = z * math.sqrt(var / n)
    return Estimate(mean, mean - half, mean + half, n)


def _fsum(values: np.ndarray) -> float:
    """The correctly rounded sum (math.fsum): independent of the order numpy would add in."""
    return math.fsum(values.tolist())


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _bootstrap(n: int, statistic: Any, value: float, level: float, resamples: int, seed: int) -> Estimate:
    rng = random.Random(seed)
    values = sorted(statistic([rng.randrange(n) for _ in range(n)]) for _ in range(resamples))
    tail = (1.0 - level) / 2.0
    return Estimate(value, _percentile(values, tail), _percentile(values, 1.0 - tail), n)


def evaluate(
    log: LoggedData,
    target: Target,
    *,
    level: float = 0.95,
    method: str = "normal",
    resamples: int = 200,
    seed: int = 0,
) -> dict[str, Estimate]:
    """IPS, SNIPS and DR estimates of the target policy's mean reward per decision, with intervals."""
    n = len(log.actions)
    if n == 0:
        raise ValueError("off-policy evaluation needs at least one logged decision")
    if len(target) != n:
        raise ValueError(f"target has {len(target)} entries for {n} logged decisions")
    if method not in {"normal", "bootstrap"}:
        raise ValueError(f"unknown interval method {method!r}: normal | bootstrap")
    model = DirectModel(log)
    pi_logged, dm = _target_terms(log, target, model)
    r = np.asarray(log.rewards, dtype=np.float64)
    w = pi_logged / np.asarray(log.propensities, dtype=np.float64)
    ips = w * r
    dr = dm + w * (r - model.at(np.asarray(log.actions, dtype=np.int64)))
    w_sum = _fsum(w)
    snips_value = _fsum(ips) / w_sum if w_sum > 0 else 0.0
    if method == "bootstrap":
        w_list, ips_list, dr_list = w.tolist(), ips.tolist(), dr.tolist()

        def mean_of(terms: list[float]) -> Any:
            return lambda idx: math.fsum(terms[i] for i in idx) / len(idx)

        def snips_of(idx: list[int]) -> float:
            total = math.fsum(w_list[i] for i in idx)
            return math.fsum(ips_list[i] for i in idx) / total if total > 0 else 0.0

        return {
            "ips": _bootstrap(n, mean_of(ips_list), _fsum(ips) / n, level, resamples, seed),
            "snips": _bootstrap(n, snips_of, snips_value, level, resamples, seed + 1),
            "dr": _bootstrap(n, mean_of(dr_list), _fsum(dr) / n, level, resamples, seed + 2),
        }
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    w_mean = w_sum / n
    # SNIPS by the delta method: the ratio's influence terms are w * (r - V) / mean(w).
    snips_terms = w * (r - snips_value) / w_mean if w_mean else np.zeros(1)
    return {"ips": _normal(ips, z), "snips": _normal(snips_terms, z, value=snips_value), "dr": _normal(dr, z)}
