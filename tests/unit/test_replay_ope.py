"""Off-policy estimators on a synthetic contextual bandit whose true policy values are known."""

from __future__ import annotations

import random

import pytest

from streams.replay.ope import LoggedData, evaluate

CONTEXTS = 5
ACTIONS = 3


def mean_reward(x: int, a: int) -> float:
    return float((x * 7 + a * 3) % 5) - 2.0 + 0.5 * a


def logging_probs(x: int) -> list[float]:
    """A stochastic logging policy that prefers action x % 3 but tries all (p >= 0.15)."""
    probs = [0.15] * ACTIONS
    probs[x % ACTIONS] = 1.0 - 0.15 * (ACTIONS - 1)
    return probs


def target_action(x: int) -> int:
    return max(range(ACTIONS), key=lambda a: mean_reward(x, a))  # the optimal policy: rarely logged


TRUE_VALUE = sum(mean_reward(x, target_action(x)) for x in range(CONTEXTS)) / CONTEXTS


def simulate(n: int, seed: int) -> LoggedData:
    rng = random.Random(seed)
    xs, acts, props, rewards = [], [], [], []
    for _ in range(n):
        x = rng.randrange(CONTEXTS)
        probs = logging_probs(x)
        a = rng.choices(range(ACTIONS), probs)[0]
        xs.append(x)
        acts.append(a)
        props.append(probs[a])
        rewards.append(mean_reward(x, a) + rng.gauss(0.0, 1.0))
    return LoggedData(xs, acts, props, rewards)


def test_estimates_cover_the_true_value() -> None:
    """One fixed log (a 95% interval misses 1 time in 20: the next test checks the rate itself)."""
    log = simulate(4_000, seed=12)
    target = [target_action(x) for x in log.contexts]
    for method in ("normal", "bootstrap"):
        estimates = evaluate(log, target, method=method, resamples=200, seed=3)
        for name, est in estimates.items():
            assert est.covers(TRUE_VALUE), (method, name, est, TRUE_VALUE)
            assert est.high - est.low < 0.6, (method, name, est)
    logged_value = sum(log.rewards) / len(log.rewards)
    assert abs(logged_value - TRUE_VALUE) > 0.5  # the logging policy is clearly worse: a real test


def test_interval_coverage_is_near_nominal() -> None:
    hits = {"ips": 0, "snips": 0, "dr": 0}
    runs = 40
    for seed in range(runs):
        log = simulate(1_500, seed=100 + seed)
        for name, est in evaluate(log, [target_action(x) for x in log.contexts]).items():
            hits[name] += est.covers(TRUE_VALUE)
    for name, count in hits.items():
        assert count / runs >= 0.85, (name, count)


def test_probability_vectors_and_dr_beats_ips_on_variance() -> None:
    log = simulate(3_000, seed=5)
    onehot = [[1.0 if a == target_action(x) else 0.0 for a in range(ACTIONS)] for x in log.contexts]
    by_vector = evaluate(log, onehot)
    by_action = evaluate(log, [target_action(x) for x in log.contexts])
    for name in by_vector:
        assert by_vector[name].value == pytest.approx(by_action[name].value)
    dr, ips = by_vector["dr"], by_vector["ips"]
    assert dr.high - dr.low < ips.high - ips.low


def test_same_seed_same_bootstrap_interval() -> None:
    log = simulate(500, seed=2)
    target = [target_action(x) for x in log.contexts]
    a = evaluate(log, target, method="bootstrap", seed=9)
    b = evaluate(log, target, method="bootstrap", seed=9)
    assert a == b


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="propensities"):
        LoggedData([0], [0], [0.0], [1.0])
    with pytest.raises(ValueError, match="same length"):
        LoggedData([0, 1], [0], [1.0], [1.0])
    with pytest.raises(ValueError, match="at least one"):
        evaluate(LoggedData([], [], [], []), [])
