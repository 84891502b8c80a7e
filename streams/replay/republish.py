"""`agentstream replay --republish TOPIC --speed X`: re-inject a recorded range for a load test.

Records keep their keys, values and headers, and their relative timing divided by `speed` (2 = twice
as fast, 0 = as fast as possible), ordered by their original record time across partitions. They get
new record timestamps: a load test measures event->action latency from the time a record enters the
pipeline, which the original timestamps (hours old) would swamp.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from connectors.admin import ensure_topics
from connectors.publish import Publisher
from streams.replay.sources import OPEN, Bound, KafkaRecord, read_topic, resolve_range
from streams.settings import Settings


@dataclass(frozen=True, slots=True)
class RepublishResult:
    sent: int
    seconds: float
    source_span_s: float  # record-time span of what was sent

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def schedule(records: list[KafkaRecord], speed: float) -> list[tuple[float, KafkaRecord]]:
    """(send offset in seconds from the start, record), ordered by original time, then partition/offset."""
    if speed < 0:
        raise ValueError(f"speed must be >= 0 (0: as fast as possible), got {speed}")
    ordered = sorted(records, key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    if not ordered:
        return []
    t0 = ordered[0].timestamp_ms
    return [((r.timestamp_ms - t0) / 1000.0 / speed if speed else 0.0, r) for r in ordered]


def republish(
    settings: Settings,
    source: str,
    target: str,
    start: Bound = OPEN,
    end: Bound = OPEN,
    speed: float = 1.0,
    progress: Callable[[int], None] | None = None,
) -> RepublishResult:
    """Copy `source`'s range into `target` (created if missing) on the original schedule / speed."""
    if source == target:
        raise ValueError("republishing a topic into itself would read its own output: pick another topic")
    records = list(read_topic(settings, source, resolve_range(settings, source, start, end)))
    plan = schedule(records, speed)
    ensure_topics(settings, [target])
    publisher = Publisher(settings)
    begin = time.perf_counter()
    for i, (due, rec) in enumerate(plan):
        wait = begin + due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        publisher.send(target, rec.key, rec.value, rec.headers)  # type: ignore[arg-type]
        if not i % 1000:
            publisher.producer.poll(0)
            if progress is not None:
                progress(i)
    publisher.flush()
    seconds = time.perf_counter() - begin
    span = (plan[-1][1].timestamp_ms - plan[0][1].timestamp_ms) / 1000.0 if plan else 0.0
    if progress is not None:
        progress(len(plan))
    return RepublishResult(len(plan), seconds, span)
