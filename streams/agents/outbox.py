"""What a batch emits, and the one place that binds table writes and sends to their source event.

Faust routes a table write to the changelog partition of the *current event*; in a batch that is
not the record being handled, so every write and send here names its source event explicitly.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import EventT

from streams.codecs import dlq_headers, dlq_value
from streams.metrics import Metrics


def bind(event: EventT) -> None:
    """Make `event` Faust's current event: table writes and sends go to its partition/transaction."""
    _current_event.set(weakref.ref(event))


@dataclass
class Outbox:
    """Records a batch will send: (topic, key, value, headers, source event)."""

    records: list[tuple[faust.TopicT, bytes | None, bytes, Any, EventT]] = field(default_factory=list)

    def add(
        self, topic: faust.TopicT, key: bytes | None, value: bytes, event: EventT, headers: Any = None
    ) -> None:
        self.records.append((topic, key, value, headers, event))

    def dead_letter(self, dlq: faust.TopicT, event: EventT, reason: str, metrics: Metrics) -> None:
        """Bad input goes to the DLQ with its original bytes and where it came from."""
        msg = event.message
        payload = msg.value if isinstance(msg.value, bytes) else bytes(msg.value or b"")
        headers = dlq_headers(reason, msg.topic, msg.partition, msg.offset)
        self.add(
            dlq, msg.key, dlq_value(payload, reason, msg.topic, msg.partition, msg.offset), event, headers
        )
        metrics.dead_letter(reason)

    async def flush(self) -> None:
        """Hand every record to the producer; Faust flushes it before committing the offsets."""
        for topic, key, value, headers, event in self.records:
            bind(event)
            await topic.send(key=key, value=value, headers=headers)
        self.records.clear()


def write_table(table: faust.Table, writes: dict[bytes, tuple[bytes, EventT]]) -> None:
    """Write the last value per key of a batch: one changelog record per key, not per event."""
    for key, (value, event) in writes.items():
        bind(event)
        table[key] = value
