"""Policies: turn a decision-table row into an action and the probability of having chosen it.

Every policy draws its randomness only from the `Draw` seeded by the decision id, so a
re-delivered event gets the same action and a replay reproduces the live decisions. The returned
probability (propensity) is logged with the decision: off-policy evaluation (IPS) divides by it.
Ties always go to the lowest index, which each scenario uses for its safe default action.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from streams.core.scenario import Draw, Observation
from streams.core.table import Row

POLICY_NAMES = ("qtable", "softmax", "thompson", "rules")
DEFAULT_PRIOR_STD = 10.0
DEFAULT_PROPENSITY_SAMPLES = 32
_TWO_PI = 2.0 * math.pi


class Policy(Protocol):
    name: str

    def choose(self, row: Row | None, obs: Observation, draw: Draw) -> tuple[int, float]:
        """(action index, propensity); `row is None` means the state was never learned."""
        ...


def _argmax(xs: list[float]) -> int:
    return xs.index(max(xs))


def _check_actions(n_actions: int) -> None:
    if n_actions < 1:
        raise ValueError(f"a policy needs at least one action, got {n_actions}")


@dataclass(slots=True)
class EpsilonGreedy:
    """Greedy on q with probability 1-epsilon, uniformly random otherwise."""

    n_actions: int
    epsilon: float
    _explore_p: float = field(init=False, repr=False)
    _greedy_p: float = field(init=False, repr=False)

    name = "qtable"

    def __post_init__(self) -> None:
        _check_actions(self.n_actions)
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        self._explore_p = self.epsilon / self.n_actions
        self._greedy_p = 1.0 - self.epsilon + self._explore_p

    def choose(self, row: Row | None, obs: Observation, draw: Draw) -> tuple[int, float]:
        return self.pick(0 if row is None else row.best(), draw.uniform(), draw.uniform)

    def pick(self, greedy: int, u: float, second: float | Callable[[], float]) -> tuple[int, float]:
        """The choice given the greedy action and the first uniform; `second` is the next uniform (or
        the draw's `uniform`, so that it is only paid for on the rare exploring branch). The replay's
        columnar path calls this with uniforms it drew in bulk."""
        if u >= self.epsilon:
            return greedy, self._greedy_p
        v = second() if callable(second) else second
        action = min(int(v * self.n_actions), self.n_actions - 1)
        return action, self._greedy_p if action == greedy else self._explore_p

    def pick_columns(
        self, greedy: np.ndarray, u: np.ndarray, second: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """`pick` for columns of events (the replay's columnar path): the same comparisons."""
        explore = ~(u >= self.epsilon)
        explored = np.minimum((second * self.n_actions).astype(np.int64), self.n_actions - 1)
        action = np.where(explore, explored, greedy)
        prob = np.where(explore & (action != greedy), self._explore_p, self._greedy_p)
        return action, prob


@dataclass(slots=True)
class Softmax:
    """Boltzmann exploration: actions with close values are tried about equally often."""

    n_actions: int
    temperature: float
    _zeros: list[float] = field(init=False, repr=False)

    name = "softmax"

    def __post_init__(self) -> None:
        _check_actions(self.n_actions)
        if not self.temperature > 0.0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        self._zeros = [0.0] * self.n_actions

    def probabilities(self, row: Row | None) -> list[float]:
        """exp((q - max q) / T), normalised; subtracting the max keeps exp from overflowing."""
        q = self._zeros if row is None else row.q
        top = max(q)
        t = self.temperature
        weights = [math.exp((x - top) / t) for x in q]
        total = sum(weights)
        return [w / total for w in weights]

    def choose(self, row: Row | None, obs: Observation, draw: Draw) -> tuple[int, float]:
        probs = self.probabilities(row)
        u = draw.uniform()
        acc = 0.0
        for i, p in enumerate(probs):
            acc += p
            if u < acc:
                return i, p
        # Rounding can leave the cumulative sum just below u: fall back to the last possible action.
        last = max(i for i, p in enumerate(probs) if p > 0.0)
        return last, probs[last]


def _normals(draw: Draw, count: int) -> list[float]:
    """Standard normals by Box-Muller, both outputs of each pair used (uniforms are the cost)."""
    uniform, sqrt, log, cos, sin = draw.uniform, math.sqrt, math.log, math.cos, math.sin
    out: list[float] = []
    for _ in range((count + 1) // 2):
        radius = sqrt(-2.0 * log(1.0 - uniform()))  # 1-u is in (0, 1]: the log is finite
        angle = _TWO_PI * uniform()
        out += (radius * cos(angle), radius * sin(angle))
    return out


@dataclass(slots=True)
class Thompson:
    """Gaussian Thompson sampling on the per-action Welford reward statistics.

    Posterior of action a: N(mean_a, s_a / sqrt(n_a + 1)) with s_a^2 = (prior_std^2 + m2_a) / (n_a + 1),
    i.e. the sample variance regularised by one pseudo-observation of variance prior_std^2. Unseen
    actions get N(0, prior_std); the pseudo-observation keeps a few identical rewards (say, zero
    loss on the first legitimate transactions) from collapsing an arm's posterior to a point and
    ending its exploration. Set prior_std to the scale of the scenario's rewards.

    The propensity is a Monte Carlo ESTIMATE: the fraction of `propensity_samples` further posterior
    draws (also from `draw`, so deterministic) in which the chosen action wins, clamped to at least
    1/(M+1) so inverse-propensity weights stay finite. It dominates the cost (k*M normals, ~90 us
    for k=3, M=32, most of it in Draw.uniform); lower M trades IPS variance for speed.
    """

    n_actions: int
    prior_std: float = DEFAULT_PRIOR_STD
    propensity_samples: int = DEFAULT_PROPENSITY_SAMPLES
    _prior_var: float = field(init=False, repr=False)
    _min_p: float = field(init=False, repr=False)

    name = "thompson"

    def __post_init__(self) -> None:
        _check_actions(self.n_actions)
        if not self.prior_std > 0.0:
            raise ValueError(f"prior_std must be > 0, got {self.prior_std}")
        if self.propensity_samples < 1:
            raise ValueError(f"propensity_samples must be >= 1, got {self.propensity_samples}")
        self._prior_var = self.prior_std**2
        self._min_p = 1.0 / (self.propensity_samples + 1)

    def posterior(self, row: Row | None) -> tuple[list[float], list[float]]:
        """(means, standard deviations) of each action's posterior."""
        if row is None:
            return [0.0] * self.n_actions, [self.prior_std] * self.n_actions
        pv = self._prior_var
        scales = [math.sqrt(pv + m2) / (n + 1) for n, m2 in zip(row.n, row.m2, strict=True)]
        return row.mean, scales

    def choose(self, row: Row | None, obs: Observation, draw: Draw) -> tuple[int, float]:
        locs, scales = self.posterior(row)
        z = _normals(draw, self.n_actions)
        action = _argmax([loc + s * zi for loc, s, zi in zip(locs, scales, z, strict=False)])
        return action, self._propensity(locs, scales, action, draw)

    def _propensity(self, locs: list[float], scales: list[float], action: int, draw: Draw) -> float:
        k, m = self.n_actions, self.propensity_samples
        zs = _normals(draw, k * m)
        loc_a, scale_a = locs[action], scales[action]
        rivals = [(i, locs[i], scales[i]) for i in range(k) if i != action]
        wins = 0
        for base in range(0, k * m, k):
            mine = loc_a + scale_a * zs[base + action]
            for i, loc, s in rivals:
                other = loc + s * zs[base + i]
                if other > mine or (other == mine and i < action):
                    break
            else:
                wins += 1
        return max(wins / m, self._min_p)


@dataclass(slots=True)
class RuleBaseline:
    """The scenario's hand-written rule, as a policy: deterministic, so propensity 1."""

    actions: tuple[str, ...]
    rule: Callable[[Observation], str]
    _index: dict[str, int] = field(init=False, repr=False)

    name = "rules"

    def __post_init__(self) -> None:
        _check_actions(len(self.actions))
        self._index = {a: i for i, a in enumerate(self.actions)}

    def choose(self, row: Row | None, obs: Observation, draw: Draw) -> tuple[int, float]:
        action = self.rule(obs)
        try:
            return self._index[action], 1.0
        except KeyError:
            raise ValueError(f"rule returned {action!r}, not one of {self.actions}") from None


def make_policy(
    name: str,
    actions: tuple[str, ...],
    baseline: Callable[[Observation], str],
    *,
    epsilon: float,
    temperature: float,
    prior_std: float = DEFAULT_PRIOR_STD,
) -> Policy:
    """The policy a settings name selects (`Settings.policy`)."""
    k = len(actions)
    if name == "qtable":
        return EpsilonGreedy(k, epsilon)
    if name == "softmax":
        return Softmax(k, temperature)
    if name == "thompson":
        return Thompson(k, prior_std=prior_std)
    if name == "rules":
        return RuleBaseline(actions, baseline)
    raise ValueError(f"unknown policy {name!r}; valid names: {', '.join(POLICY_NAMES)}")
