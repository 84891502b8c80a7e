"""Learning rules against problems with known answers, and at-most-once application."""

from __future__ import annotations

import random
import statistics

import pytest

from streams.core.learning import apply, next_max_of
from streams.core.policies import EpsilonGreedy, Thompson
from streams.core.scenario import Draw, Observation, Transition, stable_id
from streams.core.table import Row

OBS = Observation(state_key="s", features={})


def transition(decision_id: str, reward: float, action: str = "a", state: str = "s") -> Transition:
    return Transition(decision_id=decision_id, state_key=state, action=action, prob=1.0, reward=reward)


def test_first_updates_are_sample_averages_then_the_step_floors_at_alpha() -> None:
    row = Row.empty(2)
    apply(row, transition("d1", 10.0), 1, alpha=0.25)
    assert row.q[1] == 10.0  # step 1/1: no bias towards the zero start
    apply(row, transition("d2", 20.0), 1, alpha=0.25)
    assert row.q[1] == pytest.approx(15.0)  # step 1/2: the mean of both
    apply(row, transition("d3", 0.0), 1, alpha=0.25)
    assert row.q[1] == pytest.approx(10.0)  # step 1/3
    apply(row, transition("d4", 30.0), 1, alpha=0.25)
    assert row.q[1] == pytest.approx(10.0 + 0.25 * 20.0)  # 1/4 == alpha
    apply(row, transition("d5", 0.0), 1, alpha=0.25)
    assert row.q[1] == pytest.approx(15.0 * 0.75)  # 1/5 < alpha: alpha from now on
    assert row.q[0] == 0.0 and row.n == [0, 5]


def test_welford_statistics_match_the_sample() -> None:
    rewards = [3.0, -1.5, 7.25, 0.0, 2.0, 100.0, -40.0]
    row = Row.empty(1)
    for i, r in enumerate(rewards):
        apply(row, transition(f"d{i}", r), 0, alpha=0.1)
    assert row.n == [len(rewards)]
    assert row.mean[0] == pytest.approx(statistics.fmean(rewards))
    assert row.m2[0] / (len(rewards) - 1) == pytest.approx(statistics.variance(rewards))


def test_version_counts_applied_updates_only() -> None:
    row = Row.empty(2)
    assert apply(row, transition("d1", 1.0), 0, alpha=0.1)
    assert apply(row, transition("d2", 1.0), 1, alpha=0.1)
    assert not apply(row, transition("d1", 1.0), 0, alpha=0.1)
    assert row.version == 2


def test_duplicate_decision_id_is_ignored() -> None:
    row = Row.empty(2)
    assert apply(row, transition("d1", 5.0), 0, alpha=0.1)
    before = row.to_dict()
    assert not apply(row, transition("d1", -99.0), 1, alpha=0.1)
    assert row.to_dict() == before


def test_old_and_repeated_offsets_are_ignored_per_source() -> None:
    row = Row.empty(2)
    assert apply(row, transition("d1", 1.0), 0, alpha=0.1, source="risk.learning:3", offset=10)
    before = row.to_dict()
    assert not apply(row, transition("d2", 1.0), 0, alpha=0.1, source="risk.learning:3", offset=9)
    assert not apply(row, transition("d3", 1.0), 0, alpha=0.1, source="risk.learning:3", offset=10)
    assert row.to_dict() == before
    # Another partition has its own offsets; a newer offset on the first one applies.
    assert apply(row, transition("d4", 1.0), 0, alpha=0.1, source="risk.learning:1", offset=2)
    assert apply(row, transition("d5", 1.0), 0, alpha=0.1, source="risk.learning:3", offset=11)
    assert row.applied == {"risk.learning:3": 11, "risk.learning:1": 2}
    assert row.version == 3


def judged_at(decision_id: str, origin_offset: int) -> Transition:
    t = transition(decision_id, 1.0)
    t.origin, t.origin_offset = "risk.events:2", origin_offset
    return t


def test_origin_offsets_mark_repeats_unless_the_learner_recognises_them_exactly() -> None:
    """A batch handled again after a crash can judge a decision its first pass did not, below the
    origin offsets the first pass left in a row: with origin marks it is skipped (a lost update),
    without them (the live learner, which keeps exact marks) it is applied."""
    row = Row.empty(1)
    assert apply(row, judged_at("first-pass", 1921), 0, alpha=0.1)
    assert not apply(row, judged_at("second-pass", 1053), 0, alpha=0.1)  # by the origin mark
    assert apply(row, judged_at("second-pass", 1053), 0, alpha=0.1, by_origin=False)
    assert not apply(row, judged_at("second-pass", 1053), 0, alpha=0.1, by_origin=False)  # by its id
    assert row.n == [2] and row.origins == {"risk.events:2": 1921}


def test_next_max_of() -> None:
    assert next_max_of(None) == 0.0
    row = Row.empty(3)
    row.q[:] = [-4.0, -1.0, -2.0]
    assert next_max_of(row) == -1.0


def test_two_armed_bandit_converges_to_the_better_arm() -> None:
    true_means = (1.0, 3.0)
    rng = random.Random(7)
    policy = EpsilonGreedy(2, epsilon=0.2)
    row = Row.empty(2)
    for i in range(5000):
        decision_id = stable_id("bandit", str(i))
        action, _ = policy.choose(row, OBS, Draw(decision_id))
        reward = rng.gauss(true_means[action], 1.0)
        apply(row, transition(decision_id, reward), action, alpha=0.02)
    assert row.best() == 1
    assert row.q == pytest.approx(true_means, abs=0.3)  # alpha = 0.02: noise sd ~ 0.1
    assert row.mean == pytest.approx(true_means, abs=0.1)  # sample means over all pulls


def test_thompson_with_learning_settles_on_the_better_arm() -> None:
    true_means = (0.0, 1.0, 0.5)
    rng = random.Random(11)
    policy = Thompson(3, prior_std=2.0, propensity_samples=4)
    row = Row.empty(3)
    late: list[int] = []
    for i in range(1500):
        decision_id = stable_id("ts", str(i))
        action, _ = policy.choose(row, OBS, Draw(decision_id))
        apply(row, transition(decision_id, rng.gauss(true_means[action], 1.0)), action, alpha=0.05)
        if i >= 1000:
            late.append(action)
    assert late.count(1) / len(late) > 0.85
    assert row.mean[1] == pytest.approx(1.0, abs=0.15)


def test_q_learning_on_a_two_state_chain_reaches_the_optimal_values() -> None:
    # State A: "stay" pays 1 and stays in A; "go" pays 0 and moves to B.
    # State B: "back" pays 2 and returns to A; "wait" pays 0 and stays in B.
    # With gamma = 0.9, staying in A forever is worth 1/(1-0.9) = 10 > going to B (0 + 0.9*11),
    # and B is worth returning: 2 + 0.9*10 = 11. So Q*(A,stay) = 10, Q*(A,go) = 0.9*11 = 9.9,
    # Q*(B,back) = 11, Q*(B,wait) = 0.9*11 = 9.9.
    gamma = 0.9
    model = {("A", 0): (1.0, "A"), ("A", 1): (0.0, "B"), ("B", 0): (2.0, "A"), ("B", 1): (0.0, "B")}
    rows = {"A": Row.empty(2), "B": Row.empty(2)}
    rng = random.Random(3)
    state = "A"
    for i in range(6000):
        action = rng.randrange(2)  # off-policy: Q-learning learns Q* from any behaviour
        reward, nxt = model[(state, action)]
        t = Transition(f"q{i}", state, str(action), 0.5, reward, next_state_key=nxt)
        apply(rows[state], t, action, alpha=0.2, gamma=gamma, next_max=next_max_of(rows[nxt]))
        state = nxt
    assert rows["A"].q == pytest.approx([10.0, 9.9], abs=1e-3)
    assert rows["B"].q == pytest.approx([11.0, 9.9], abs=1e-3)
    assert rows["A"].best() == 0 and rows["B"].best() == 0
