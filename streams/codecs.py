"""Wire formats: orjson for the JSON contract, and the dead-letter record format.

Agents receive raw bytes (Faust's `raw` serializer) and decode here in one call per record:
Faust's Record models cost several microseconds per field, orjson a fraction of one.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

dumps = orjson.dumps
loads = orjson.loads

# Header names a dead-letter record carries (values are UTF-8 bytes).
DLQ_REASON = "dlq.reason"
DLQ_TOPIC = "dlq.source.topic"
DLQ_PARTITION = "dlq.source.partition"
DLQ_OFFSET = "dlq.source.offset"


# A DLQ record must always fit (a record the broker refuses would stop the worker on every restart:
# a poison pill). Its JSON holds the payload as latin-1 text, up to 6 bytes per byte ("\u0000"), so
# payloads are kept up to DLQ_MAX_PAYLOAD bytes and the DLQ topic and producers allow DLQ_MAX_RECORD.
DLQ_MAX_PAYLOAD = 2 << 20
DLQ_MAX_REASON = 500
DLQ_MAX_RECORD = 6 * DLQ_MAX_PAYLOAD + (1 << 20)


def dlq_bounded(payload: bytes, reason: str) -> tuple[bytes, str]:
    """The payload and reason a DLQ record can carry: beyond DLQ_MAX_PAYLOAD the payload is cut and the
    reason says so (the source topic/partition/offset still lead to the original)."""
    reason = reason[:DLQ_MAX_REASON]
    if len(payload) <= DLQ_MAX_PAYLOAD:
        return payload, reason
    return payload[:DLQ_MAX_PAYLOAD], f"{reason} [payload cut to {DLQ_MAX_PAYLOAD} of {len(payload)} bytes]"


def dlq_headers(reason: str, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """Headers that let an operator find and replay the original record."""
    return [
        (DLQ_REASON, reason.encode()),
        (DLQ_TOPIC, topic.encode()),
        (DLQ_PARTITION, str(partition).encode()),
        (DLQ_OFFSET, str(offset).encode()),
    ]


def dlq_value(payload: bytes, reason: str, topic: str, partition: int, offset: int) -> bytes:
    """The DLQ value keeps the original bytes untouched (as latin-1 text so JSON can hold any byte)."""
    return dumps(
        {
            "source_topic": topic,
            "partition": partition,
            "offset": offset,
            "reason": reason,
            "payload": payload.decode("latin-1"),
            "ts": time.time(),
        }
    )


def dlq_payload(value: bytes) -> bytes:
    """The original bytes of a DLQ record (inverse of the latin-1 packing in `dlq_value`)."""
    record: dict[str, Any] = loads(value)
    return record["payload"].encode("latin-1")
