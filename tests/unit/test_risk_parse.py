"""The risk parsers: every malformed record becomes InvalidEvent with a reason, never a crash."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.scenario import InvalidEvent
from streams.scenarios.risk import MAX_PAYLOAD_BYTES, Label, RiskScenario, Transaction
from tests.data.bad_records import BAD_EVENTS, BAD_LABELS, GOOD_LABEL, GOOD_TX, NOW, BadRecord, tx

# Unit-only kinds: a Kafka record value is bytes or null, never a str.
NOT_BYTES = [BadRecord("str payload", "a str payload", "payload must be bytes")]  # type: ignore[arg-type]
BAD_TX = [r for r in BAD_EVENTS if not r.key_only] + NOT_BYTES


@pytest.fixture(scope="module")
def scenario() -> RiskScenario:
    return RiskScenario()


# --- good records -----------------------------------------------------------------------------


def test_good_record_parses_to_its_fields(scenario: RiskScenario) -> None:
    event = scenario.parse(tx())
    assert isinstance(event, Transaction)
    assert event.to_dict() == GOOD_TX
    assert scenario.key(event) == "A0000001"
    assert scenario.event_id(event) == "t1"
    assert scenario.event_ts(event) == NOW


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": 7},  # an integer amount is a number
        {"amount": 1_000_000},  # the upper bound is inclusive
        {"amount": 0.01},
        {"event_ts": 946_684_800},  # 2000-01-01 exactly
        {"channel": "ecom"},
        {"channel": "atm", "merchant_category": "6011"},
        {"account_id": "x" * 64},
        {"country": "GB", "currency": "GBP"},
    ],
)
def test_good_variants_parse(scenario: RiskScenario, changes: dict[str, Any]) -> None:
    event = scenario.parse(tx(**changes))
    assert type(event.amount) is float and type(event.event_ts) is float
    for name, value in changes.items():
        assert getattr(event, name) == value


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_bytes_like_payloads_parse(scenario: RiskScenario, wrap: Any) -> None:
    assert scenario.parse(wrap(tx())).transaction_id == "t1"


def test_field_order_does_not_matter(scenario: RiskScenario) -> None:
    reordered = dict(reversed(list(GOOD_TX.items())))
    assert scenario.parse(orjson.dumps(reordered)).to_dict() == GOOD_TX


# --- bad records (tests/data/bad_records.py): each must give InvalidEvent with a precise reason ----


@pytest.mark.parametrize("bad", BAD_TX, ids=[r.name for r in BAD_TX])
def test_bad_record_is_invalid_event_with_reason(scenario: RiskScenario, bad: BadRecord) -> None:
    with pytest.raises(InvalidEvent) as info:
        scenario.parse(bad.value)
    assert bad.reason in info.value.reason
    assert len(info.value.reason) < 300  # bounded: reasons go into DLQ headers


def test_corpus_covers_at_least_fifty_kinds() -> None:
    assert len(BAD_TX) >= 50
    assert len({r.name for r in BAD_EVENTS + BAD_LABELS}) == len(BAD_EVENTS) + len(BAD_LABELS)


def test_reasons_quote_untrusted_input_bounded(scenario: RiskScenario) -> None:
    with pytest.raises(InvalidEvent) as info:
        scenario.parse(tx(channel="z" * 10_000))
    assert len(info.value.reason) < 80
    many_extra = orjson.dumps(GOOD_TX | {f"k{i}" * 50: i for i in range(100)})
    with pytest.raises(InvalidEvent) as info:
        scenario.parse(many_extra)
    assert info.value.reason.startswith("unexpected fields: ") and len(info.value.reason) < 300


def test_payload_size_checked_before_decoding(scenario: RiskScenario) -> None:
    huge = b"{" + b" " * MAX_PAYLOAD_BYTES + b"}"  # would decode fine, but is too big
    with pytest.raises(InvalidEvent, match="exceeds"):
        scenario.parse(huge)


# --- the future bound -------------------------------------------------------------------------


def test_future_bound_follows_the_clock_when_given() -> None:
    scenario = RiskScenario(clock=lambda: NOW)
    assert scenario.parse(tx(event_ts=NOW + 86_400)).event_ts == NOW + 86_400
    with pytest.raises(InvalidEvent, match="in the future"):
        scenario.parse(tx(event_ts=NOW + 86_401))


def test_future_bound_is_configurable() -> None:
    strict = RiskScenario(clock=lambda: NOW, max_future_s=5.0)
    strict.parse(tx(event_ts=NOW + 5))
    with pytest.raises(InvalidEvent, match="more than 5s in the future"):
        strict.parse(tx(event_ts=NOW + 6))


def test_without_clock_simulated_time_far_ahead_is_accepted() -> None:
    assert RiskScenario().parse(tx(event_ts=NOW + 365 * 86_400)).event_ts == NOW + 365 * 86_400


# --- outcomes -------------------------------------------------------------------------------------


def test_good_label_parses(scenario: RiskScenario) -> None:
    label = scenario.parse_outcome(orjson.dumps(GOOD_LABEL))
    assert isinstance(label, Label)
    assert label.to_dict() == GOOD_LABEL


BAD_LABEL_PAYLOADS = [r for r in BAD_LABELS if not r.key_only]


@pytest.mark.parametrize("bad", BAD_LABEL_PAYLOADS, ids=[r.name for r in BAD_LABEL_PAYLOADS])
def test_bad_label_is_invalid_event(scenario: RiskScenario, bad: BadRecord) -> None:
    with pytest.raises(InvalidEvent) as info:
        scenario.parse_outcome(bad.value)
    assert bad.reason in info.value.reason


# --- fuzzing: only InvalidEvent or a valid result, never another exception ---------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def _parse_or_invalid(parse: Any, raw: bytes) -> Any:
    try:
        return parse(raw)
    except InvalidEvent as exc:
        assert exc.reason
        return None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    scenario = RiskScenario()
    result = _parse_or_invalid(scenario.parse, raw)
    assert result is None or isinstance(result, Transaction)
    outcome = _parse_or_invalid(scenario.parse_outcome, raw)
    assert outcome is None or isinstance(outcome, Label)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_fuzz_arbitrary_json(value: Any) -> None:
    raw = orjson.dumps(value)
    scenario = RiskScenario()
    assert _parse_or_invalid(scenario.parse, raw) is None  # never a complete, valid transaction
    assert _parse_or_invalid(scenario.parse_outcome, raw) is None


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(sorted(GOOD_TX)), json_values)
def test_fuzz_one_field_replaced(name: str, value: Any) -> None:
    """Closer to real bugs than random bytes: a well-formed record with one field gone wrong."""
    result = _parse_or_invalid(RiskScenario().parse, tx(**{name: value}))
    if result is not None:
        assert isinstance(result, Transaction)
        assert result.amount > 0 and result.channel in {"pos", "ecom", "atm"}


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(GOOD_LABEL)), json_values)
def test_fuzz_label_field_replaced(name: str, value: Any) -> None:
    result = _parse_or_invalid(RiskScenario().parse_outcome, orjson.dumps(GOOD_LABEL | {name: value}))
    assert result is None or type(result.is_fraud) is bool
