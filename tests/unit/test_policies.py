"""Policies: propensities are true probabilities, choices are reproducible per decision id."""

from __future__ import annotations

import math
from collections import Counter
from statistics import NormalDist

import pytest

from streams.core.policies import (
    POLICY_NAMES,
    EpsilonGreedy,
    Policy,
    RuleBaseline,
    Softmax,
    Thompson,
    make_policy,
)
from streams.core.scenario import Draw, Observation, stable_id
from streams.core.table import Row

OBS = Observation(state_key="s", features={})
ACTIONS = ("approve", "review", "decline")


def row_with_q(q: list[float]) -> Row:
    row = Row.empty(len(q))
    row.q[:] = q
    return row


def stats_row(means: list[float], stds: list[float], n: int) -> Row:
    """A row as if each action had n rewards with these sample means and standard deviations."""
    k = len(means)
    return Row(q=list(means), n=[n] * k, mean=list(means), m2=[s * s * (n - 1) for s in stds])


def run(policy: Policy, row: Row | None, decisions: int) -> tuple[Counter[int], dict[int, set[float]]]:
    """Action counts and the propensities reported per action over many decision ids."""
    counts: Counter[int] = Counter()
    probs: dict[int, set[float]] = {}
    for i in range(decisions):
        action, prob = policy.choose(row, OBS, Draw(stable_id("decision", str(i))))
        counts[action] += 1
        probs.setdefault(action, set()).add(prob)
    return counts, probs


ALL_POLICIES: list[Policy] = [
    EpsilonGreedy(3, 0.2),
    Softmax(3, 1.0),
    Thompson(3, prior_std=2.0),
    RuleBaseline(ACTIONS, lambda obs: "review"),
]


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=lambda p: p.name)
def test_same_decision_id_gives_the_same_action_and_propensity(policy: Policy) -> None:
    row = stats_row([0.0, 0.3, 0.1], [1.0, 1.0, 1.0], n=5)
    for i in range(50):
        seed = stable_id("event", str(i))
        assert policy.choose(row, OBS, Draw(seed)) == policy.choose(row, OBS, Draw(seed))


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=lambda p: p.name)
def test_unlearned_state_is_allowed(policy: Policy) -> None:
    action, prob = policy.choose(None, OBS, Draw("x"))
    assert 0 <= action < 3 and 0.0 < prob <= 1.0


def test_epsilon_greedy_propensities_sum_to_one_and_match_frequencies() -> None:
    decisions = 20_000
    counts, probs = run(EpsilonGreedy(3, 0.3), row_with_q([0.0, 2.0, 1.0]), decisions)
    assert all(len(p) == 1 for p in probs.values())  # one propensity per action in a fixed state
    propensity = {a: p.pop() for a, p in probs.items()}
    assert propensity == pytest.approx({0: 0.1, 1: 0.8, 2: 0.1})
    assert sum(propensity.values()) == pytest.approx(1.0)
    for action, p in propensity.items():
        assert counts[action] / decisions == pytest.approx(p, abs=0.01)


def test_epsilon_greedy_with_zero_epsilon_is_greedy() -> None:
    policy = EpsilonGreedy(3, 0.0)
    counts, probs = run(policy, row_with_q([0.0, 2.0, 1.0]), 200)
    assert counts == {1: 200} and probs == {1: {1.0}}
    assert run(policy, row_with_q([5.0, 2.0, 5.0]), 50)[0] == {0: 50}  # tie: lowest index
    assert run(policy, None, 50)[0] == {0: 50}  # unlearned: the safe default


def test_epsilon_greedy_validates_epsilon() -> None:
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError):
            EpsilonGreedy(3, bad)


def test_softmax_probabilities() -> None:
    policy = Softmax(3, temperature=2.0)
    q = [1.0, 3.0, 0.0]
    weights = [math.exp(x / 2.0) for x in q]
    expected = [w / sum(weights) for w in weights]
    assert policy.probabilities(row_with_q(q)) == pytest.approx(expected)
    assert policy.probabilities(None) == pytest.approx([1 / 3] * 3)


def test_softmax_frequencies_match_reported_propensities() -> None:
    decisions = 20_000
    policy = Softmax(3, temperature=2.0)
    row = row_with_q([1.0, 3.0, 0.0])
    expected = policy.probabilities(row)
    counts, probs = run(policy, row, decisions)
    for action in range(3):
        assert probs[action] == {expected[action]}
        assert counts[action] / decisions == pytest.approx(expected[action], abs=0.01)


def test_softmax_is_numerically_stable_for_large_values() -> None:
    probs = Softmax(2, temperature=0.01).probabilities(row_with_q([1000.0, 1000.05]))
    assert probs == pytest.approx([math.exp(-5) / (1 + math.exp(-5)), 1 / (1 + math.exp(-5))])


def test_thompson_prefers_a_clearly_better_arm() -> None:
    row = stats_row([0.0, 5.0, 1.0], [1.0, 1.0, 1.0], n=100)
    counts, probs = run(Thompson(3), row, 300)
    assert counts[1] >= 295
    assert all(0.0 < p <= 1.0 for ps in probs.values() for p in ps)
    assert min(probs[1]) > 0.9


def test_thompson_propensity_estimates_the_win_probability() -> None:
    # Two arms: P(arm 1 wins) = Phi((m1 - m0) / sqrt(s0^2 + s1^2)) exactly.
    policy = Thompson(2, prior_std=1.0)
    row = stats_row([0.0, 0.2], [1.0, 1.0], n=10)
    locs, scales = policy.posterior(row)
    p1 = NormalDist().cdf((locs[1] - locs[0]) / math.hypot(*scales))
    reported: dict[int, list[float]] = {0: [], 1: []}
    for i in range(1500):
        action, prob = policy.choose(row, OBS, Draw(stable_id("t", str(i))))
        reported[action].append(prob)
    for action, exact in ((0, 1 - p1), (1, p1)):
        assert sum(reported[action]) / len(reported[action]) == pytest.approx(exact, abs=0.02)
        assert len(reported[action]) / 1500 == pytest.approx(exact, abs=0.04)


def test_thompson_propensity_is_clamped_away_from_zero() -> None:
    policy = Thompson(2, propensity_samples=8)
    row = stats_row([0.0, 50.0], [0.1, 0.1], n=1000)
    for i in range(200):  # arm 0 essentially never wins, yet if picked its weight must stay finite
        _, prob = policy.choose(row, OBS, Draw(str(i)))
        assert prob >= 1 / 9


def test_thompson_posterior_shrinks_with_data_and_stays_wide_when_unseen() -> None:
    policy = Thompson(2, prior_std=10.0)
    assert policy.posterior(None) == ([0.0, 0.0], [10.0, 10.0])
    row = stats_row([1.0, 1.0], [0.0, 0.0], n=4)  # identical rewards: no sample spread
    _, scales = policy.posterior(row)
    assert scales[0] == pytest.approx(10.0 / 5)  # the prior pseudo-observation keeps it open
    _, more = policy.posterior(stats_row([1.0, 1.0], [0.0, 0.0], n=400))
    assert more[0] < scales[0]


def test_rule_baseline() -> None:
    policy = RuleBaseline(ACTIONS, lambda obs: "decline" if obs.features["amount"] > 100 else "approve")
    big = Observation("s", {"amount": 500.0})
    small = Observation("s", {"amount": 5.0})
    assert policy.choose(None, big, Draw("a")) == (2, 1.0)
    assert policy.choose(None, small, Draw("a")) == (0, 1.0)
    with pytest.raises(ValueError, match="refund"):
        RuleBaseline(ACTIONS, lambda obs: "refund").choose(None, small, Draw("a"))


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_make_policy_builds_every_named_policy(name: str) -> None:
    policy = make_policy(name, ACTIONS, lambda obs: "approve", epsilon=0.1, temperature=10.0)
    assert policy.name == name
    action, prob = policy.choose(None, OBS, Draw("d"))
    assert 0 <= action < len(ACTIONS) and 0.0 < prob <= 1.0


def test_make_policy_rejects_unknown_names_listing_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="qtable, softmax, thompson, rules"):
        make_policy("greedy", ACTIONS, lambda obs: "approve", epsilon=0.1, temperature=1.0)
