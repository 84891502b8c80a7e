"""A corpus of bad input for the risk topics, shared by the parser unit tests and the live DLQ test.

Each entry is one kind of bad record as it would arrive on the wire (key + value bytes) with a
fragment its dead-letter reason must contain. Most are rejected by the parser; a few carry a valid
payload and are bad only because of their record key (`key_only`): the worker rejects those, since
a record keyed differently from its entity would put the entity's state in a partition that does
not own it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import orjson

from streams.scenarios.risk import MAX_PAYLOAD_BYTES

NOW = 1_704_067_200.0  # 2024-01-01T00:00:00Z
GOOD_KEY = b"A0000001"

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


def label(**changes: Any) -> bytes:
    return orjson.dumps(GOOD_LABEL | changes)


def without(record: dict[str, Any], *names: str) -> bytes:
    return orjson.dumps({k: v for k, v in record.items() if k not in names})


def confluent_avro(schema_id: int, body: bytes) -> bytes:
    """Confluent's Avro wire format: magic byte 0, a 4-byte big-endian schema id, the Avro body."""
    return b"\x00" + schema_id.to_bytes(4, "big") + body


def incompressible(size: int, seed: int = 7) -> bytes:
    """Random bytes: lz4 cannot shrink them, so the broker sees (and the DLQ must carry) every byte."""
    return random.Random(seed).randbytes(size)


@dataclass(frozen=True)
class BadRecord:
    name: str
    value: bytes | None
    reason: str  # a fragment of the dead-letter reason
    key: bytes | None = GOOD_KEY
    key_only: bool = False  # the payload is valid: only the record key is wrong


BAD_EVENTS: list[BadRecord] = [
    # --- not JSON at all ------------------------------------------------------------------------
    BadRecord("invalid utf-8", b'{"transaction_id": "\xff\xfe"}', "invalid JSON"),
    BadRecord("invalid utf-8 raw", b"\xc3\x28", "invalid JSON"),
    BadRecord("utf-16 json", json.dumps(GOOD_TX).encode("utf-16"), "invalid JSON"),
    BadRecord("utf-8 bom", b"\xef\xbb\xbf" + tx(), "invalid JSON"),
    BadRecord("lone surrogate escape", tx(transaction_id="X").replace(b'"X"', b'"\\ud800"'), "invalid JSON"),
    BadRecord("truncated", tx()[:-7], "invalid JSON"),
    BadRecord("truncated mid-string", tx()[:25], "invalid JSON"),
    BadRecord("empty payload", b"", "invalid JSON"),
    BadRecord("null value (tombstone)", None, "payload must be bytes"),
    BadRecord("whitespace payload", b"   ", "invalid JSON"),
    BadRecord("trailing garbage", tx() + b"x", "invalid JSON"),
    BadRecord("nul byte after document", tx() + b"\x00", "invalid JSON"),
    BadRecord("two documents", tx() + tx(), "invalid JSON"),
    BadRecord("single quotes", tx().replace(b'"', b"'"), "invalid JSON"),
    BadRecord("comment", b"// card tx\n" + tx(), "invalid JSON"),
    BadRecord("NaN literal", tx().replace(b"42.5", b"NaN"), "invalid JSON"),
    BadRecord("Infinity literal", tx().replace(b"42.5", b"Infinity"), "invalid JSON"),
    BadRecord("-Infinity literal", tx().replace(b"42.5", b"-Infinity"), "invalid JSON"),
    BadRecord("overflowing number", tx().replace(b"42.5", b"1e400"), "invalid JSON"),
    BadRecord("python json NaN", json.dumps(GOOD_TX | {"amount": float("nan")}).encode(), "invalid JSON"),
    BadRecord("deep nesting", b"[" * 5000 + b"]" * 5000, "invalid JSON"),
    BadRecord("gzip bytes", b"\x1f\x8b\x08\x00" + incompressible(64), "invalid JSON"),
    BadRecord("csv line", b"t1,A0000001,T000001,42.5,USD,5411,US,pos,1704067200", "invalid JSON"),
    BadRecord("xml", b"<tx><amount>42.5</amount></tx>", "invalid JSON"),
    BadRecord("wrong avro schema id", confluent_avro(999, b"\x04t1\x10A0000001"), "schema id 999"),
    BadRecord("avro magic, json body", confluent_avro(1, tx()), "schema id 1"),
    # --- too big -----------------------------------------------------------------------------------
    BadRecord("1 MiB payload", tx(transaction_id="x" * (1 << 20)), f"exceeds {MAX_PAYLOAD_BYTES}"),
    BadRecord("900 KiB binary payload", incompressible(900 << 10), "exceeds"),
    BadRecord("just over the size limit", b"{" + b" " * MAX_PAYLOAD_BYTES + b"}", "exceeds"),
    # --- JSON, but not an object ---------------------------------------------------------------
    BadRecord("array", b"[1, 2, 3]", "not a JSON object"),
    BadRecord("array of records", b"[" + tx() + b"]", "not a JSON object"),
    BadRecord("string", b'"hello"', "not a JSON object"),
    BadRecord("number", b"42", "not a JSON object"),
    BadRecord("null", b"null", "not a JSON object"),
    BadRecord("boolean", b"true", "not a JSON object"),
    # --- missing or extra fields -----------------------------------------------------------------
    BadRecord("missing amount", without(GOOD_TX, "amount"), "missing field amount"),
    BadRecord("missing two", without(GOOD_TX, "amount", "channel"), "missing fields amount, channel"),
    BadRecord("missing account", without(GOOD_TX, "account_id"), "missing field account_id"),
    BadRecord("empty object", b"{}", "missing fields transaction_id"),
    BadRecord("extra fields", tx(b=1, a=2), "unexpected fields: a, b"),
    BadRecord("extra null field", tx(note=None), "unexpected fields: note"),
    BadRecord("renamed field", without(GOOD_TX, "amount")[:-1] + b',"amt":42.5}', "missing field amount"),
    # --- wrong types -------------------------------------------------------------------------------
    BadRecord("null amount", tx(amount=None), "amount must be a number, got null"),
    BadRecord("string amount", tx(amount="42.5"), "amount must be a number, got string"),
    BadRecord("bool amount", tx(amount=True), "amount must be a number, got boolean"),
    BadRecord("nested amount", tx(amount={"value": 1}), "amount must be a number, got object"),
    BadRecord("array amount", tx(amount=[1]), "amount must be a number, got array"),
    BadRecord("string NaN amount", tx(amount="NaN"), "amount must be a number, got string"),
    BadRecord("null account", tx(account_id=None), "account_id must be a string, got null"),
    BadRecord("numeric account", tx(account_id=12), "account_id must be a string, got number"),
    BadRecord("numeric currency", tx(currency=840), "currency must be a string, got number"),
    BadRecord("integer mcc", tx(merchant_category=5411), "merchant_category must be a string"),
    BadRecord("string ts", tx(event_ts="2024-01-01T00:00:00Z"), "event_ts must be a number, got string"),
    BadRecord("bool ts", tx(event_ts=False), "event_ts must be a number, got boolean"),
    # --- absurd values -----------------------------------------------------------------------------
    BadRecord("zero amount", tx(amount=0), "amount must be a positive finite number"),
    BadRecord("negative amount", tx(amount=-5.0), "amount must be a positive finite number"),
    BadRecord("negative zero amount", tx(amount=-0.0), "amount must be a positive finite number"),
    BadRecord("underflow to zero", tx().replace(b"42.5", b"1e-400"), "amount must be a positive finite"),
    BadRecord("absurd amount", tx(amount=1e12), "exceeds the 1000000 limit"),
    BadRecord("huge integer amount", tx().replace(b"42.5", b"1" + b"0" * 30), "exceeds the 1000000 limit"),
    BadRecord("just above limit", tx(amount=1_000_000.01), "exceeds the 1000000 limit"),
    # --- unknown enum values and malformed codes ---------------------------------------------------
    BadRecord("unknown channel", tx(channel="online"), "unknown channel 'online'"),
    BadRecord("upper-case channel", tx(channel="POS"), "unknown channel 'POS'"),
    BadRecord("numeric channel", tx(channel=1), "unknown channel 1"),
    BadRecord("null channel", tx(channel=None), "unknown channel None"),
    BadRecord("lower-case currency", tx(currency="usd"), "currency must be 3 upper-case letters"),
    BadRecord("long currency", tx(currency="USDX"), "currency must be 3 upper-case letters"),
    BadRecord("non-ascii currency", tx(currency="ÜSD"), "currency must be 3 upper-case letters"),
    BadRecord("short mcc", tx(merchant_category="541"), "merchant_category must be 4 digits"),
    BadRecord("alpha mcc", tx(merchant_category="54a1"), "merchant_category must be 4 digits"),
    BadRecord("fullwidth mcc", tx(merchant_category="\uff15\uff14\uff11\uff11"), "must be 4 digits"),
    BadRecord("bad country", tx(country="USA"), "country must be 2 upper-case letters"),
    # --- empty or oversized ids --------------------------------------------------------------------
    BadRecord("empty account", tx(account_id=""), "empty account_id"),
    BadRecord("blank account", tx(account_id="   "), "empty account_id"),
    BadRecord("long terminal", tx(terminal_id="T" * 65), "terminal_id longer than 64"),
    BadRecord("empty transaction id", tx(transaction_id=""), "empty transaction_id"),
    # --- timestamps far in the past or future (no clock: simulated time is allowed to run ahead) --
    BadRecord("negative ts", tx(event_ts=-1.0), "before 2000-01-01"),
    BadRecord("epoch zero ts", tx(event_ts=0), "before 2000-01-01"),
    BadRecord("1999 ts", tx(event_ts=946_684_799.0), "before 2000-01-01"),
    BadRecord("milliseconds ts", tx(event_ts=1_704_067_200_000), "after 2100-01-01"),
    BadRecord("year 3000 ts", tx(event_ts=32_503_680_000.0), "after 2100-01-01"),
    # --- a valid payload under the wrong record key (the worker's check, not the parser's) -------
    BadRecord("empty key", tx(transaction_id="k1"), "record key", key=b"", key_only=True),
    BadRecord("null key", tx(transaction_id="k2"), "record key", key=None, key_only=True),
    BadRecord(
        "key of another account", tx(transaction_id="k3"), "record key", key=b"A0000002", key_only=True
    ),
]

BAD_LABELS: list[BadRecord] = [
    BadRecord("label invalid json", b"{", "invalid JSON"),
    BadRecord("label invalid utf-8", b"\xff\xfe\xfd", "invalid JSON"),
    BadRecord("label avro", confluent_avro(42, b"\x02"), "schema id 42"),
    BadRecord("label null value", None, "payload must be bytes"),
    BadRecord("label array", b"[]", "not a JSON object"),
    BadRecord("label missing is_fraud", without(GOOD_LABEL, "is_fraud"), "missing field is_fraud"),
    BadRecord("label numeric is_fraud", label(is_fraud=1), "is_fraud must be a boolean, got number"),
    BadRecord("label string is_fraud", label(is_fraud="true"), "is_fraud must be a boolean, got string"),
    BadRecord("label null ts", label(label_ts=None), "label_ts must be a number, got null"),
    BadRecord("label ancient ts", label(label_ts=5.0), "before 2000-01-01"),
    BadRecord("label empty terminal", label(terminal_id=""), "empty terminal_id"),
    BadRecord("label extra field", label(amount=1.0), "unexpected fields: amount"),
    BadRecord("label oversized", b" " * (MAX_PAYLOAD_BYTES + 1), "exceeds"),
    BadRecord("label without key", label(), "without a key", key=None, key_only=True),
]
