"""The risk parsers: every malformed record becomes InvalidEvent with a reason, never a crash."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.scenario import InvalidEvent
from streams.scenarios.risk import MAX_PAYLOAD_BYTES, Label, RiskScenario, Transaction

NOW = 1_704_067_200.0  # 2024-01-01T00:00:00Z

GOOD_TX: dict[str, Any] = {
    "transaction_id": "t1",
    "account_id": "A0000001",
    "terminal_id": "T000001",
    "amount": 42.5,
    "currency": "USD",
    "merchant_category": "5411",
    "country": "US",
    "channel": "pos",
    "event_ts": NOW,
}
GOOD_LABEL: dict[str, Any] = {
    "transaction_id": "t1",
    "account_id": "A0000001",
    "terminal_id": "T000001",
    "is_fraud": True,
    "label_ts": NOW + 60,
}


def tx(**changes: Any) -> bytes:
    return orjson.dumps(GOOD_TX | changes)


def without(record: dict[str, Any], *names: str) -> bytes:
    return orjson.dumps({k: v for k, v in record.items() if k not in names})


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


# --- bad records: each must give InvalidEvent with a precise reason ---------------------------

BAD_RECORDS: list[tuple[str, Any, str]] = [
    ("invalid utf-8", b'{"transaction_id": "\xff\xfe"}', "invalid JSON"),
    ("invalid utf-8 raw", b"\xc3\x28", "invalid JSON"),
    ("truncated", tx()[:-7], "invalid JSON"),
    ("empty payload", b"", "invalid JSON"),
    ("whitespace payload", b"   ", "invalid JSON"),
    ("trailing garbage", tx() + b"x", "invalid JSON"),
    ("NaN literal", tx().replace(b"42.5", b"NaN"), "invalid JSON"),
    ("Infinity literal", tx().replace(b"42.5", b"Infinity"), "invalid JSON"),
    ("overflowing number", tx().replace(b"42.5", b"1e400"), "invalid JSON"),
    ("python json NaN", json.dumps(GOOD_TX | {"amount": float("nan")}).encode(), "invalid JSON"),
    ("deep nesting", b"[" * 5000 + b"]" * 5000, "invalid JSON"),
    ("1 MiB payload", tx(transaction_id="x" * (1 << 20)), "exceeds 65536"),
    ("array", b"[1, 2, 3]", "not a JSON object"),
    ("string", b'"hello"', "not a JSON object"),
    ("number", b"42", "not a JSON object"),
    ("null", b"null", "not a JSON object"),
    ("missing amount", without(GOOD_TX, "amount"), "missing field amount"),
    ("missing two", without(GOOD_TX, "amount", "channel"), "missing fields amount, channel"),
    ("empty object", b"{}", "missing fields transaction_id"),
    ("extra fields", tx(b=1, a=2), "unexpected fields: a, b"),
    ("null amount", tx(amount=None), "amount must be a number, got null"),
    ("string amount", tx(amount="42.5"), "amount must be a number, got string"),
    ("bool amount", tx(amount=True), "amount must be a number, got boolean"),
    ("nested amount", tx(amount={"value": 1}), "amount must be a number, got object"),
    ("array amount", tx(amount=[1]), "amount must be a number, got array"),
    ("zero amount", tx(amount=0), "amount must be a positive finite number"),
    ("negative amount", tx(amount=-5.0), "amount must be a positive finite number"),
    ("negative zero amount", tx(amount=-0.0), "amount must be a positive finite number"),
    ("absurd amount", tx(amount=1e12), "exceeds the 1000000 limit"),
    ("just above limit", tx(amount=1_000_000.01), "exceeds the 1000000 limit"),
    ("unknown channel", tx(channel="x"), "unknown channel 'x'"),
    ("upper-case channel", tx(channel="POS"), "unknown channel 'POS'"),
    ("numeric channel", tx(channel=1), "unknown channel 1"),
    ("lower-case currency", tx(currency="usd"), "currency must be 3 upper-case letters"),
    ("long currency", tx(currency="USDX"), "currency must be 3 upper-case letters"),
    ("non-ascii currency", tx(currency="ÜSD"), "currency must be 3 upper-case letters"),
    ("numeric currency", tx(currency=840), "currency must be a string, got number"),
    ("short mcc", tx(merchant_category="541"), "merchant_category must be 4 digits"),
    ("alpha mcc", tx(merchant_category="54a1"), "merchant_category must be 4 digits"),
    ("integer mcc", tx(merchant_category=5411), "merchant_category must be a string"),
    ("fullwidth mcc", tx(merchant_category="\uff15\uff14\uff11\uff11"), "must be 4 digits"),
    ("bad country", tx(country="USA"), "country must be 2 upper-case letters"),
    ("empty account", tx(account_id=""), "empty account_id"),
    ("blank account", tx(account_id="   "), "empty account_id"),
    ("null account", tx(account_id=None), "account_id must be a string, got null"),
    ("numeric account", tx(account_id=12), "account_id must be a string, got number"),
    ("long terminal", tx(terminal_id="T" * 65), "terminal_id longer than 64"),
    ("empty transaction id", tx(transaction_id=""), "empty transaction_id"),
    ("negative ts", tx(event_ts=-1.0), "before 2000-01-01"),
    ("1999 ts", tx(event_ts=946_684_799.0), "before 2000-01-01"),
    ("milliseconds ts", tx(event_ts=1_704_067_200_000), "after 2100-01-01"),
    ("string ts", tx(event_ts="2024-01-01T00:00:00Z"), "event_ts must be a number, got string"),
    ("bool ts", tx(event_ts=False), "event_ts must be a number, got boolean"),
    ("not bytes", "a str payload", "payload must be bytes"),
    ("None payload", None, "payload must be bytes"),
]


@pytest.mark.parametrize(
    ("raw", "reason"), [(r, why) for _, r, why in BAD_RECORDS], ids=[n for n, _, _ in BAD_RECORDS]
)
def test_bad_record_is_invalid_event_with_reason(scenario: RiskScenario, raw: Any, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        scenario.parse(raw)
    assert reason in info.value.reason
    assert len(info.value.reason) < 300  # bounded: reasons go into DLQ headers


def test_table_covers_at_least_thirty_kinds() -> None:
    assert len(BAD_RECORDS) >= 30


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


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{", "invalid JSON"),
        (b"[]", "not a JSON object"),
        (without(GOOD_LABEL, "is_fraud"), "missing field is_fraud"),
        (orjson.dumps(GOOD_LABEL | {"is_fraud": 1}), "is_fraud must be a boolean, got number"),
        (orjson.dumps(GOOD_LABEL | {"is_fraud": "true"}), "is_fraud must be a boolean, got string"),
        (orjson.dumps(GOOD_LABEL | {"label_ts": None}), "label_ts must be a number, got null"),
        (orjson.dumps(GOOD_LABEL | {"label_ts": 5.0}), "before 2000-01-01"),
        (orjson.dumps(GOOD_LABEL | {"terminal_id": ""}), "empty terminal_id"),
        (orjson.dumps(GOOD_LABEL | {"amount": 1.0}), "unexpected fields: amount"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), "exceeds"),
    ],
)
def test_bad_label_is_invalid_event(scenario: RiskScenario, raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        scenario.parse_outcome(raw)
    assert reason in info.value.reason


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
