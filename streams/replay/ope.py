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
        if any(not 0.0 < p <= 1.0 for p in self.propensities):
            raise ValueError("propensities must be in (0, 1]")


class DirectModel:
    """Mean reward per (context, action), with fallbacks for pairs the log never saw."""

    def __init__(self, log: LoggedData) -> None:
        sums: dict[tuple[Hashable, int], list[float]] = {}
        by_action: dict[int, list[float]] = {}
        for x, a, r in zip(log.contexts, log.actions, log.rewards, strict=True):
            cell = sums.setdefault((x, a), [0.0, 0.0])
            cell[0] += r
            cell[1] += 1.0
            total = by_action.setdefault(a, [0.0, 0.0])
            total[0] += r
            total[1] += 1.0
        self._cell = {k: s / n for k, (s, n) in sums.items()}
        self._action = {a: s / n for a, (s, n) in by_action.items()}
        n = len(log.rewards)
        self._overall = math.fsum(log.rewards) / n if n else 0.0

    def __call__(self, context: Hashable, action: int) -> float:
        value = self._cell.get((context, action))
        if value is None:
            value = self._action.get(action, self._overall)
        return value


def _target_terms(log: LoggedData, target: Target, model: DirectModel) -> tuple[list[float], list[float]]:
    """Per sample: pi(a_logged | x) and sum_a pi(a|x) q(x, a)."""
    pi_logged: list[float] = []
    dm: list[float] = []
    for x, a, t in zip(log.contexts, log.actions, target, strict=True):
        if isinstance(t, int):
            pi_logged.append(1.0 if t == a else 0.0)
            dm.append(model(x, t))
        else:
            pi_logged.append(float(t[a]))
            dm.append(math.fsum(p * model(x, b) for b, p in enumerate(t) if p))
    return pi_logged, dm


def _normal(terms: list[float], z: float, value: float | None = None) -> Estimate:
    n = len(terms)
    mean = math.fsum(terms) / n if value is None else value
    if n < 2:
        return Estimate(mean, mean, mean, n)
    centre = math.fsum(terms) / n
    var = math.fsum((t - centre) ** 2 for t in terms) / (n - 1)
    half = z * math.sqrt(var / n)
    return Estimate(mean, mean - half, mean + half, n)


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
    w = [pi / p for pi, p in zip(pi_logged, log.propensities, strict=True)]
    r = log.rewards
    ips = [wi * ri for wi, ri in zip(w, r, strict=True)]
    fitted = [model(x, a) for x, a in zip(log.contexts, log.actions, strict=True)]
    dr = [d + wi * (ri - q) for d, wi, ri, q in zip(dm, w, r, fitted, strict=True)]
    w_sum = math.fsum(w)
    snips_value = math.fsum(ips) / w_sum if w_sum > 0 else 0.0
    if method == "bootstrap":

        def mean_of(terms: list[float]) -> Any:
            return lambda idx: math.fsum(terms[i] for i in idx) / len(idx)

        def snips_of(idx: list[int]) -> float:
            total = math.fsum(w[i] for i in idx)
            return math.fsum(ips[i] for i in idx) / total if total > 0 else 0.0

        return {
            "ips": _bootstrap(n, mean_of(ips), math.fsum(ips) / n, level, resamples, seed),
            "snips": _bootstrap(n, snips_of, snips_value, level, resamples, seed + 1),
            "dr": _bootstrap(n, mean_of(dr), math.fsum(dr) / n, level, resamples, seed + 2),
        }
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    w_mean = w_sum / n
    # SNIPS by the delta method: the ratio's influence terms are w * (r - V) / mean(w).
    snips_terms = [wi * (ri - snips_value) / w_mean for wi, ri in zip(w, r, strict=True)] if w_mean else [0.0]
    return {"ips": _normal(ips, z), "snips": _normal(snips_terms, z, value=snips_value), "dr": _normal(dr, z)}
