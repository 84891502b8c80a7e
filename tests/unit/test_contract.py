"""The JSON records we put on the risk topics match the Avro contracts in schemas/."""

from __future__ import annotations

import orjson
import pytest
from fastavro.validation import ValidationError

from connectors.generate import RiskGenerator
from streams.core.contract import load_schema, parsed_schema, schema_names, validate
from streams.core.scenario import Decision, Transition
from streams.scenarios.risk import AccountState, RiskScenario

RISK_SCHEMAS = ("risk.events", "risk.actions", "risk.feedback", "risk.learning", "risk.dlq")


@pytest.mark.parametrize("name", RISK_SCHEMAS)
def test_schema_loads_and_parses(name: str) -> None:
    assert name in schema_names()
    schema = load_schema(name)
    assert schema["type"] == "record" and schema["namespace"] == "io.agentstream.risk"
    parsed_schema(name)


def test_unknown_schema_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match=r"no schema 'risk\.nope'"):
        load_schema("risk.nope")


def test_generated_events_and_labels_match_the_contract() -> None:
    scenario = RiskScenario()
    kinds = {"event": 0, "feedback": 0}
    for rec in RiskGenerator(seed=8).records(3_000):
        body = orjson.loads(rec.value)
        validate(body, "risk.events" if rec.kind == "event" else "risk.feedback")
        parsed = scenario.parse(rec.value) if rec.kind == "event" else scenario.parse_outcome(rec.value)
        assert parsed.to_dict() == body  # the parsed object carries exactly the contract's fields
        kinds[rec.kind] += 1
    assert kinds["event"] == 3_000 and kinds["feedback"] > 2_500


def _decision() -> tuple[RiskScenario, Decision]:
    scenario = RiskScenario()
    raw = next(r for r in RiskGenerator(seed=8).records(1) if r.kind == "event").value
    event = scenario.parse(raw)
    obs = scenario.observe(AccountState(), event)
    decision = Decision(
        decision_id=scenario.decision_id(event),
        entity=scenario.key(event),
        action="review",
        prob=0.95,
        policy="qtable",
        policy_version=3,
        state_key=obs.state_key,
        event_ts=event.event_ts,
        decision_ts=event.event_ts + 0.01,
        event_id=scenario.event_id(event),
        features=obs.features,
    )
    return scenario, decision


def test_decisions_match_the_actions_contract() -> None:
    _, decision = _decision()
    validate(orjson.loads(orjson.dumps(decision.to_dict())), "risk.actions")


@pytest.mark.parametrize("next_state_key", [None, "a1|v0|z0|t0|n0|c0"])
def test_transitions_match_the_learning_contract(next_state_key: str | None) -> None:
    scenario, decision = _decision()
    outcome = scenario.no_feedback_outcome(decision)
    validate(outcome.to_dict(), "risk.feedback")
    transition = Transition(
        decision_id=decision.decision_id,
        state_key=decision.state_key,
        action=decision.action,
        prob=decision.prob,
        reward=scenario.reward(decision, outcome),
        next_state_key=next_state_key,
        event_ts=decision.event_ts,
    )
    validate(orjson.loads(orjson.dumps(transition.to_dict())), "risk.learning")


def test_dead_letters_match_the_dlq_contract() -> None:
    record = {
        "source_topic": "risk.events",
        "partition": 3,
        "offset": 123_456_789_012,
        "reason": "invalid JSON: unexpected end of data",
        "payload": b'{"amount": ',
        "ts": 1_704_067_200.5,
    }
    validate(record, "risk.dlq")


@pytest.mark.parametrize(
    ("name", "record"),
    [
        ("risk.events", {"transaction_id": "t"}),  # missing fields
        ("risk.feedback", {"transaction_id": "t", "account_id": "a", "terminal_id": "x", "label_ts": 1.0}),
        (
            "risk.learning",
            {
                "decision_id": "d",
                "state_key": "k",
                "action": "block",
                "prob": 1.0,
                "reward": 0.0,
                "next_state_key": None,
                "event_ts": 0.0,
            },
        ),
    ],
)
def test_records_off_contract_are_rejected(name: str, record: dict) -> None:
    with pytest.raises(ValidationError):
        validate(record, name)


def test_event_with_unknown_channel_is_off_contract() -> None:
    body = orjson.loads(next(RiskGenerator(seed=8).records(1)).value)
    with pytest.raises(ValidationError):
        validate(body | {"channel": "phone"}, "risk.events")
