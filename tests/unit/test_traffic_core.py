"""The traffic scenario's pure core: parsing, state keys, baselines, constraints, rewards, schemas."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.scenario import Decision, InvalidEvent, Scenario, Transition
from streams.scenarios.traffic import (
    Approach,
    Reading,
    TrafficScenario,
    fixed_time_action,
    max_pressure_action,
    max_pressure_phase,
    queue_bin,
    state_key,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
# Four green phases as netgenerate builds them: N-S through, N-S left, E-W through, E-W left.
GROUPS = [[0, 6], [1, 7], [2, 4], [3, 5]]


def reading(halting: list[int], phase: int = 0, time_in_phase: float = 15.0, **kw: Any) -> Reading:
    approaches = [Approach(h, h + 1, 2.0 * h) for h in halting]
    return Reading("A0", kw.pop("step", 100), 1000.0, phase, time_in_phase, approaches, GROUPS, **kw)


def raw(r: Reading) -> bytes:
    return orjson.dumps(r.to_dict())


@pytest.fixture
def sc() -> TrafficScenario:
    return TrafficScenario()


def decide(sc: TrafficScenario, r: Reading, action: str) -> Decision:
    obs = sc.observe(sc.update(sc.initial_state(), r), r)
    return Decision(
        sc.decision_id(r), "A0", action, 1.0, "test", 0, obs.state_key, 0.0, 0.0, "e", obs.features
    )


def test_implements_the_protocol(sc: TrafficScenario) -> None:
    assert isinstance(sc, Scenario)
    assert sc.actions == ("0", "1", "2", "3")
    assert (sc.min_green_s, sc.yellow_s) == (10.0, 3.0)


def test_parse_round_trip(sc: TrafficScenario) -> None:
    r = reading([0, 1, 2, 3, 4, 5, 6, 7], phase=2, run="train3")
    assert sc.parse(raw(r)) == r
    assert sc.key(r) == "A0"
    assert sc.event_ts(r) == 1000.0


def _mutated(**changes: Any) -> bytes:
    d = reading([1] * 8).to_dict()
    for k, v in changes.items():
        if v is ...:
            del d[k]
        else:
            d[k] = v
    return orjson.dumps(d)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        _mutated(intersection_id=...),
        _mutated(intersection_id=""),
        _mutated(step=-1),
        _mutated(step=True),
        _mutated(step=1.5),
        _mutated(sim_ts="now"),
        _mutated(time_in_phase=-1),
        _mutated(phase=4),
        _mutated(approaches=[]),
        _mutated(approaches=[{"halting": 3, "vehicles": 2, "waiting_s": 0.0}] * 8),
        _mutated(approaches=["x"] * 8),
        _mutated(phase_approaches=[]),
        _mutated(phase_approaches=[[0], [9]]),
        _mutated(phase_approaches=[[0]] * 5),
        _mutated(run=3),
    ],
)
def test_parse_rejects_malformed(sc: TrafficScenario, payload: bytes) -> None:
    with pytest.raises(InvalidEvent):
        sc.parse(payload)


@given(st.binary(max_size=200))
def test_parse_raises_only_invalid_event_on_bytes(payload: bytes) -> None:
    with contextlib.suppress(InvalidEvent):
        TrafficScenario().parse(payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 50) | st.floats(-5, 50) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=12,
)


@given(st.fixed_dictionaries({}, optional={k: json_values for k in reading([0] * 8).to_dict()}))
def test_parse_raises_only_invalid_event_on_objects(d: dict[str, Any]) -> None:
    with contextlib.suppress(InvalidEvent):
        TrafficScenario().parse(orjson.dumps(d))


@pytest.mark.parametrize(("halting", "expected"), [(0, 0), (1, 1), (3, 1), (4, 2), (8, 2), (9, 3), (40, 3)])
def test_queue_bins(halting: int, expected: int) -> None:
    assert queue_bin(halting) == expected


def test_state_key_bins_each_phase_group() -> None:
    # phase groups: 0 -> approaches 0+6, 1 -> 1+7, 2 -> 2+4, 3 -> 3+5
    r = reading([2, 0, 5, 9, 4, 0, 1, 0], phase=1, time_in_phase=4.0)
    assert r.phase_queues() == [3, 0, 9, 9]
    assert state_key(r) == "p1|g0|q1033"
    assert state_key(reading([0] * 8, time_in_phase=10.0)) == "p0|g1|q0000"


def test_max_pressure_serves_the_longest_queue(sc: TrafficScenario) -> None:
    r = reading([1, 0, 5, 0, 4, 0, 1, 0])  # queues [2, 0, 9, 0]
    assert max_pressure_action(r) == "2"
    obs = sc.observe(sc.initial_state(), r)
    assert sc.baseline(obs) == "2"


def test_max_pressure_keeps_on_ties_and_before_min_green() -> None:
    assert max_pressure_phase([3, 0, 3, 0], phase=2, can_switch=True) == 2
    assert max_pressure_phase([3, 0, 1, 0], phase=2, can_switch=True) == 0
    assert max_pressure_phase([3, 0, 1, 0], phase=2, can_switch=False) == 2
    assert max_pressure_action(reading([0, 0, 9, 0, 9, 0, 0, 0], time_in_phase=5.0)) == "0"


def test_fixed_time_cycles_through_the_plan() -> None:
    plan = [30.0, 10.0, 30.0, 10.0]
    assert fixed_time_action(reading([0] * 8, phase=0, time_in_phase=25.0), plan) == "0"
    assert fixed_time_action(reading([0] * 8, phase=0, time_in_phase=30.0), plan) == "1"
    assert fixed_time_action(reading([0] * 8, phase=3, time_in_phase=10.0), plan) == "0"


def test_constraints_keep_the_phase(sc: TrafficScenario) -> None:
    early = sc.observe(sc.initial_state(), reading([0] * 8, phase=1, time_in_phase=5.0))
    assert [sc.effective_action(early, a) for a in sc.actions] == ["1"] * 4
    ready = sc.observe(sc.initial_state(), reading([0] * 8, phase=1, time_in_phase=10.0))
    assert [sc.effective_action(ready, a) for a in sc.actions] == ["0", "1", "2", "3"]
    two_phase = Reading("B", 1, 0.0, 1, 20.0, [Approach(0, 0, 0.0)] * 2, [[0], [1]])
    obs = sc.observe(sc.initial_state(), two_phase)
    assert sc.effective_action(obs, "3") == "1"  # no such phase here: keep
    assert sc.effective_action(obs, "x") == "1"


@pytest.mark.parametrize(
    ("kind", "expected"), [("queue", -4.0), ("queue_delta", 12.0 - 4.0), ("wait_delta", 24.0 - 7.5)]
)
def test_rewards(kind: str, expected: float) -> None:
    sc = TrafficScenario(reward_kind=kind)
    r = reading([3, 0, 5, 0, 4, 0, 0, 0])  # 12 halting, 24 s waiting
    d = decide(sc, r, "2")
    nxt = reading([1, 0, 1, 0, 2, 0, 0, 0], step=105)
    m = sc.measurement(d.decision_id, nxt)
    m.total_waiting_s = 7.5
    outcome = sc.parse_outcome(orjson.dumps(m.to_dict()))
    assert sc.outcome_decision_id(outcome) == d.decision_id
    assert outcome.next_state_key == state_key(nxt)
    assert sc.reward(d, outcome) == pytest.approx(expected)


def test_unknown_reward_kind() -> None:
    with pytest.raises(ValueError, match="unknown reward"):
        TrafficScenario(reward_kind="speed")


@pytest.mark.parametrize("payload", [b"{}", b'{"intersection_id": "A0", "step": 1}', b"[]"])
def test_parse_outcome_rejects_malformed(sc: TrafficScenario, payload: bytes) -> None:
    with pytest.raises(InvalidEvent):
        sc.parse_outcome(payload)


def test_decision_ids_are_stable_and_per_run(sc: TrafficScenario) -> None:
    a, b = reading([0] * 8), reading([5] * 8)
    assert sc.decision_id(a) == sc.decision_id(b)  # same intersection and step: a re-delivery
    assert sc.decision_id(a) != sc.decision_id(reading([0] * 8, step=105))
    assert sc.decision_id(a) != sc.decision_id(reading([0] * 8, run="train1"))


def test_update_counts_switches(sc: TrafficScenario) -> None:
    s = sc.initial_state()
    for phase in (0, 0, 2, 2, 3):
        s = sc.update(s, reading([0] * 8, phase=phase))
    assert (s.readings, s.switches, s.last_phase) == (5, 2, 3)


def _avro_round_trip(schema_file: str, record: dict[str, Any]) -> dict[str, Any]:
    schema = fastavro.parse_schema(json.loads((SCHEMAS / schema_file).read_text()))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    buf.seek(0)
    return fastavro.schemaless_reader(buf, schema)


def test_schemas_carry_every_record(sc: TrafficScenario) -> None:
    r = reading([3, 0, 5, 0, 4, 0, 0, 0], run="eval")
    d = decide(sc, r, "2")
    m = sc.measurement(d.decision_id, reading([0] * 8, step=105))
    t = Transition(d.decision_id, d.state_key, d.action, 1.0, 3.0, m.next_state_key, 1.0)
    assert _avro_round_trip("traffic.events.avsc", r.to_dict()) == r.to_dict()
    assert _avro_round_trip("traffic.actions.avsc", d.to_dict()) == d.to_dict()
    assert _avro_round_trip("traffic.feedback.avsc", m.to_dict()) == m.to_dict()
    assert _avro_round_trip("traffic.learning.avsc", t.to_dict()) == t.to_dict()


def test_state_survives_the_table(sc: TrafficScenario) -> None:
    s = sc.update(sc.initial_state(), reading([0] * 8, phase=2))
    s.last_offsets["3"] = 41
    assert sc.state_from_dict(orjson.loads(orjson.dumps(sc.state_to_dict(s)))) == s
