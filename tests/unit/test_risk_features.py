"""Risk features: windows, Welford statistics, terminal risk, state keys, baseline and costs."""

from __future__ import annotations

import math
import statistics
from dataclasses import replace

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.scenario import Decision, Scenario, stable_id
from streams.scenarios.risk import (
    MAX_TERMINALS,
    NEVER_SECS,
    TERMINAL_MAX_LABELS,
    TERMINAL_PRIOR,
    WINDOW_1D,
    WINDOW_1H,
    WINDOW_1M,
    AccountState,
    Label,
    RingWindow,
    RiskScenario,
    Transaction,
    decision_id_for,
    label_terminal,
    state_key,
    terminal_risk_of,
)
from streams.settings import Settings

T0 = 1_704_067_200.0  # a multiple of 10 s, 5 min and 1 h: bucket edges fall on round offsets


def make_tx(
    offset: float = 0.0,
    amount: float = 40.0,
    terminal: str = "T1",
    channel: str = "pos",
    country: str = "US",
    txid: str = "t",
) -> Transaction:
    return Transaction(txid, "A1", terminal, amount, "USD", "5411", country, channel, T0 + offset)


@pytest.fixture
def scenario() -> RiskScenario:
    return RiskScenario({})


def feed(scenario: RiskScenario, state: AccountState, *events: Transaction) -> AccountState:
    for event in events:
        scenario.update(state, event)
    return state


# --- ring windows ---------------------------------------------------------------------------------


def test_window_counts_and_sums_within_the_minute() -> None:
    w = RingWindow(*WINDOW_1M)
    for offset, amount in ((0, 10.0), (15, 20.0), (42, 5.5)):
        w.add(T0 + offset, amount)
    assert w.totals_at(T0 + 42) == (3, 35.5)


def test_window_expires_whole_buckets_after_the_window() -> None:
    w = RingWindow(*WINDOW_1M)  # 6 buckets of 10 s
    w.add(T0, 10.0)
    w.add(T0 + 30, 1.0)
    assert w.totals_at(T0 + 59.9) == (2, 11.0)  # bucket 5: T0's bucket 0 still inside
    assert w.totals_at(T0 + 60) == (1, 1.0)  # bucket 6: bucket 0 left the window
    assert w.totals_at(T0 + 89.9) == (1, 1.0)
    assert w.totals_at(T0 + 90) == (0, 0.0)
    w.add(T0 + 60, 2.0)  # advancing the head clears the expired bucket for good
    assert w.totals_at(T0 + 60) == (2, 3.0)
    assert w.counts == [1, 0, 0, 1, 0, 0]


def test_window_reads_do_not_mutate() -> None:
    w = RingWindow(*WINDOW_1H)
    w.add(T0, 10.0)
    before = w.to_list()
    assert w.totals_at(T0 + 86_400) == (0, 0.0)
    assert w.to_list() == before


def test_window_after_a_long_gap_starts_clean() -> None:
    w = RingWindow(*WINDOW_1D)
    for h in range(30):
        w.add(T0 + h * 3600, 1.0)
    w.add(T0 + 10 * 86_400, 7.0)
    assert w.totals_at(T0 + 10 * 86_400) == (1, 7.0)


def test_out_of_order_within_the_window_is_counted() -> None:
    w = RingWindow(*WINDOW_1M)
    w.add(T0 + 40, 1.0)
    w.add(T0 + 5, 2.0)  # 35 s late: still inside the minute
    assert w.totals_at(T0 + 40) == (2, 3.0)


def test_out_of_order_older_than_the_window_is_dropped_without_corruption() -> None:
    w = RingWindow(*WINDOW_1M)
    w.add(T0 + 100, 1.0)
    w.add(T0 + 20, 50.0)  # older than the window: its slot now holds a live bucket; must not land there
    assert w.totals_at(T0 + 100) == (1, 1.0)
    w.add(T0 + 105, 1.0)
    assert w.totals_at(T0 + 105) == (2, 2.0)


@settings(max_examples=200, deadline=None)
@given(
    spec=st.sampled_from([WINDOW_1M, WINDOW_1H, WINDOW_1D]),
    steps=st.lists(
        st.tuples(st.floats(0, 400), st.floats(-120, 0), st.floats(0.01, 500)), min_size=1, max_size=40
    ),
    query_ahead=st.floats(0, 200_000),
)
def test_window_matches_brute_force(
    spec: tuple[int, int], steps: list[tuple[float, float, float]], query_ahead: float
) -> None:
    """Time moves forward with some disorder; the window equals a recount over the raw events."""
    width, n = spec
    w = RingWindow(width, n)
    events: list[tuple[float, float]] = []
    clock = T0
    for advance, jitter, amount in steps:
        clock += advance * width / 10
        ts = clock + jitter * width / 10
        w.add(ts, amount)
        events.append((ts, amount))
        for query in (ts, clock + query_ahead):
            head = max(int(t // width) for t, _ in events)
            top = max(int(query // width), head)
            live = [a for t, a in events if top - n < int(t // width) <= top]
            count, total = w.totals_at(query)
            assert count == len(live)
            assert total == pytest.approx(sum(live), rel=1e-9, abs=1e-6)


# --- account state --------------------------------------------------------------------------------


def test_welford_mean_and_std_match_statistics(scenario: RiskScenario) -> None:
    amounts = [12.5, 40.0, 7.25, 300.0, 55.5, 55.5, 1.0]
    state = feed(scenario, AccountState(), *(make_tx(i * 30, a) for i, a in enumerate(amounts)))
    assert state.n == len(amounts)
    assert state.mean == pytest.approx(statistics.mean(amounts))
    assert state.std == pytest.approx(statistics.stdev(amounts))


def test_std_is_zero_below_two_transactions() -> None:
    assert AccountState().std == 0.0


def test_terminals_are_bounded_and_most_recent_last(scenario: RiskScenario) -> None:
    state = AccountState()
    for i in range(MAX_TERMINALS + 5):
        scenario.update(state, make_tx(i, terminal=f"T{i}"))
    assert len(state.terminals) == MAX_TERMINALS
    assert state.terminals[0] == "T5" and state.terminals[-1] == f"T{MAX_TERMINALS + 4}"
    scenario.update(state, make_tx(100, terminal="T5"))  # seen again: moves to the end, no duplicate
    assert state.terminals[-1] == "T5" and state.terminals.count("T5") == 1


def test_state_round_trips_through_json(scenario: RiskScenario) -> None:
    state = feed(
        scenario,
        AccountState(),
        make_tx(0, 10.0, "T1"),
        make_tx(5, 20.0, "T2", "ecom", "GB"),
        make_tx(4000, 30.0, "T3"),
    )
    state.last_offsets = {"0": 41, "3": 7}
    data = orjson.loads(orjson.dumps(state.to_dict()))
    assert AccountState.from_dict(data) == state
    assert AccountState.from_dict(AccountState().to_dict()) == AccountState()


def test_state_rejects_a_stored_window_of_the_wrong_shape() -> None:
    data = AccountState().to_dict()
    data["w1m"] = [0, [0, 0], [0.0, 0.0]]
    with pytest.raises(ValueError, match="6 buckets"):
        AccountState.from_dict(data)


def test_last_ts_and_home_country_survive_disorder(scenario: RiskScenario) -> None:
    state = feed(scenario, AccountState(), make_tx(100, country="DE"), make_tx(50, country="FR"))
    assert state.last_ts == T0 + 100
    assert state.home_country == "DE"


# --- observe (on the state BEFORE the event) ---------------------------------------------------


def test_first_transaction_has_no_history(scenario: RiskScenario) -> None:
    f = scenario.observe(AccountState(), make_tx()).features
    assert f["count_1m"] == 0 and f["count_1h"] == 0 and f["sum_1d"] == 0
    assert f["new_terminal"] == 1.0 and f["foreign"] == 0.0 and f["amount_z"] == 0.0
    assert f["secs_since_last"] == NEVER_SECS
    assert f["terminal_risk"] == TERMINAL_PRIOR


def test_observe_sees_history_but_not_the_event_itself(scenario: RiskScenario) -> None:
    state = feed(scenario, AccountState(), make_tx(0, 10.0), make_tx(20, 30.0))
    before = state.to_dict()
    obs = scenario.observe(state, make_tx(50, 500.0, terminal="T9", channel="ecom", country="GB"))
    assert state.to_dict() == before  # observe is read-only
    f = obs.features
    assert (f["count_1m"], f["count_1h"], f["sum_1d"]) == (2.0, 2.0, 40.0)
    assert (f["mean"], f["std"]) == (20.0, pytest.approx(statistics.stdev([10.0, 30.0])))
    assert f["secs_since_last"] == 30.0
    assert f["new_terminal"] == 1.0 and f["cnp"] == 1.0 and f["foreign"] == 1.0
    assert f["distinct_terminals"] == 1.0
    assert f["amount_z"] == pytest.approx((500.0 - 20.0) / statistics.stdev([10.0, 30.0]))
    assert obs.state_key == "a3|v1|z1|t0|n1|c2"
    assert set(f) == {
        "amount",
        "amount_z",
        "count_1m",
        "count_1h",
        "sum_1d",
        "mean",
        "std",
        "distinct_terminals",
        "secs_since_last",
        "new_terminal",
        "terminal_risk",
        "cnp",
        "foreign",
    }
    assert all(type(v) is float and math.isfinite(v) for v in f.values())


def test_observe_windows_end_at_the_event_time(scenario: RiskScenario) -> None:
    state = feed(scenario, AccountState(), make_tx(0), make_tx(10))
    f = scenario.observe(state, make_tx(3 * 3600)).features
    assert (f["count_1m"], f["count_1h"], f["sum_1d"]) == (0.0, 0.0, 80.0)


def test_z_score_denominator_has_a_floor(scenario: RiskScenario) -> None:
    state = feed(scenario, AccountState(), make_tx(0, 40.0), make_tx(60, 40.0))  # std 0
    f = scenario.observe(state, make_tx(120, 50.0)).features
    assert f["amount_z"] == pytest.approx(10.0 / (0.25 * 40.0))


# --- discretisation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "bucket"),
    [
        (0.01, 0),
        (24.99, 0),
        (25.0, 1),
        (99.99, 1),
        (100.0, 2),
        (299.99, 2),
        (300.0, 3),
        (999.99, 3),
        (1000.0, 4),
    ],
)
def test_amount_buckets(amount: float, bucket: int) -> None:
    assert state_key(amount, 0, 0.0, 0.0, False, False, False).startswith(f"a{bucket}|")


@pytest.mark.parametrize(("count", "bucket"), [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (50, 2)])
def test_velocity_buckets(count: int, bucket: int) -> None:
    assert state_key(10.0, count, 0.0, 0.0, False, False, False).split("|")[1] == f"v{bucket}"


@pytest.mark.parametrize(("z", "bucket"), [(-5.0, 0), (2.99, 0), (3.0, 1), (40.0, 1)])
def test_z_buckets(z: float, bucket: int) -> None:
    assert state_key(10.0, 0, z, 0.0, False, False, False).split("|")[2] == f"z{bucket}"


@pytest.mark.parametrize(
    ("risk", "bucket"), [(0.0, 0), (0.0299, 0), (0.03, 1), (0.0999, 1), (0.1, 2), (1.0, 2)]
)
def test_terminal_risk_buckets(risk: float, bucket: int) -> None:
    assert state_key(10.0, 0, 0.0, risk, False, False, False).split("|")[3] == f"t{bucket}"


@pytest.mark.parametrize(
    ("cnp", "foreign", "key_end"),
    [(False, False, "n1|c0"), (True, False, "n1|c1"), (False, True, "n1|c1"), (True, True, "n1|c2")],
)
def test_new_terminal_and_cnp_foreign_flags(cnp: bool, foreign: bool, key_end: str) -> None:
    assert state_key(10.0, 0, 0.0, 0.0, True, cnp, foreign).endswith(key_end)


def test_state_space_is_a_few_hundred() -> None:
    keys = {
        state_key(a, v, z, t, n, c, f)
        for a in (1, 30, 150, 500, 5000)
        for v in (0, 2, 9)
        for z in (0, 9)
        for t in (0, 0.05, 0.5)
        for n in (False, True)
        for c in (False, True)
        for f in (False, True)
    }
    assert len(keys) == 540


# --- terminal risk ------------------------------------------------------------------------------------


def _label(fraud: bool, terminal: str = "T1") -> Label:
    return Label("t", "A1", terminal, fraud, T0)


def test_terminal_risk_is_smoothed() -> None:
    stats: dict[str, list[int]] = {}
    assert terminal_risk_of(stats, "T1") == TERMINAL_PRIOR
    assert terminal_risk_of(None, "T1") == TERMINAL_PRIOR
    for fraud in (True, True, False, False):
        label_terminal(stats, _label(fraud))
    assert stats["T1"] == [2, 4]
    assert terminal_risk_of(stats, "T1") == pytest.approx((2 + 0.01 * 20) / (4 + 20))


def test_label_terminal_replaces_the_entry_and_forgets_by_halving() -> None:
    stats: dict[str, list[int]] = {}
    first = label_terminal(stats, _label(True))
    second = label_terminal(stats, _label(False))
    assert first == [1, 1] and second == [1, 2] and first is not second  # a table sees a write
    stats["T1"] = [40, TERMINAL_MAX_LABELS]
    assert label_terminal(stats, _label(False)) == [20, (TERMINAL_MAX_LABELS + 1) // 2]


def test_no_terminal_labels_are_ignored() -> None:
    stats: dict[str, list[int]] = {}
    assert label_terminal(stats, _label(False, terminal="")) is None
    assert stats == {}


def test_scenario_reads_its_terminal_stats() -> None:
    stats = {"T1": [10, 20]}
    scenario = RiskScenario(stats)
    obs = scenario.observe(AccountState(), make_tx(terminal="T1"))
    assert obs.features["terminal_risk"] == pytest.approx(10.2 / 40)
    assert "|t2|" in obs.state_key
    scenario.record_outcome(stats, _label(True))  # the join agent's hook
    assert stats["T1"] == [11, 21]


class _GetOnly:
    """Like the adapter's read view over partitioned stats: only `.get`."""

    def __init__(self, data: dict[str, list[int]]) -> None:
        self.data = data

    def get(self, key: str, default: object = None) -> object:
        return self.data.get(key, default)


def test_terminal_stats_need_only_get() -> None:
    scenario = RiskScenario(_GetOnly({"T1": [0, 80]}))
    assert scenario.terminal_risk("T1") == pytest.approx(0.2 / 100)


# --- identity, baseline, costs ---------------------------------------------------------------------


def test_is_a_scenario(scenario: RiskScenario) -> None:
    assert isinstance(scenario, Scenario)
    assert scenario.name == "risk" and scenario.actions == ("approve", "review", "decline")
    state = feed(scenario, scenario.initial_state(), make_tx(0), make_tx(30, 12.0, "T2"))
    data = orjson.loads(orjson.dumps(scenario.state_to_dict(state)))
    assert scenario.state_from_dict(data) == state


def test_decision_and_outcome_ids_agree(scenario: RiskScenario) -> None:
    event = make_tx(txid="tx-42")
    label = Label("tx-42", "A1", "T1", True, T0)
    assert scenario.decision_id(event) == scenario.outcome_decision_id(label) == decision_id_for("tx-42")
    assert decision_id_for("tx-42") == stable_id("risk", "tx-42")
    assert decision_id_for("tx-43") != decision_id_for("tx-42")


def _decision(action: str, amount: float = 250.0) -> Decision:
    return Decision("d", "A1", action, 1.0, "rules", 0, "k", T0, T0, "t", {"amount": amount})


@pytest.mark.parametrize(
    ("action", "fraud", "cost"),
    [
        ("approve", True, 250.0),
        ("approve", False, 0.0),
        ("review", True, 5.0),
        ("review", False, 5.0),
        ("decline", True, 0.0),
        ("decline", False, 20.0),
    ],
)
def test_cost_matrix(scenario: RiskScenario, action: str, fraud: bool, cost: float) -> None:
    assert scenario.cost(action, fraud, 250.0) == cost
    assert scenario.reward(_decision(action), _label(fraud)) == -cost


def test_costs_follow_settings_and_overrides() -> None:
    defaults = Settings()
    scenario = RiskScenario(review_fee=defaults.review_fee, friction_cost=defaults.friction_cost)
    assert scenario.cost("review", False, 1.0) == 5.0 and scenario.cost("decline", False, 1.0) == 20.0
    pricier = RiskScenario(review_fee=8.0, friction_cost=50.0)
    assert pricier.cost("review", True, 1.0) == 8.0 and pricier.cost("decline", False, 1.0) == 50.0
    custom = dict(scenario.costs) | {("approve", True): (10.0, 1.5)}
    assert RiskScenario(costs=custom).cost("approve", True, 100.0) == 160.0


def test_no_feedback_means_legit_and_leaves_terminals_alone(scenario: RiskScenario) -> None:
    decision = replace(_decision("decline"), event_id="tx-9", entity="A7")
    outcome = scenario.no_feedback_outcome(decision)
    assert outcome.is_fraud is False and outcome.terminal_id == ""
    assert scenario.outcome_decision_id(outcome) == decision_id_for("tx-9")
    assert outcome.account_id == "A7"
    assert scenario.reward(decision, outcome) == -20.0
    assert scenario.no_feedback_outcome(decision, now=T0 + 99).label_ts == T0 + 99


@pytest.mark.parametrize(
    ("features", "action"),
    [
        ({}, "approve"),
        ({"amount": 650.0}, "review"),
        ({"amount": 150.0, "amount_z": 4.0}, "review"),
        ({"amount": 150.0, "new_terminal": 1.0, "cnp": 1.0, "foreign": 1.0}, "review"),
        ({"terminal_risk": 0.2}, "review"),
        ({"amount": 1500.0, "terminal_risk": 0.2}, "decline"),
        ({"amount": 2.0, "count_1m": 6.0, "cnp": 1.0, "foreign": 1.0}, "decline"),
        ({"amount": 2.0, "count_1m": 6.0, "cnp": 1.0}, "approve"),
    ],
)
def test_baseline_rules(scenario: RiskScenario, features: dict[str, float], action: str) -> None:
    obs = scenario.observe(AccountState(), make_tx())
    obs.features |= features
    assert scenario.baseline(obs) == action
