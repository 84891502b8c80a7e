"""Watching an output topic grow, and reading back what a run appended to it.

The bench never consumes an implementation's output while it runs (a consumer decoding records
would take CPU from the process being measured on a 2-core machine): it polls the high watermarks,
which costs the broker one small request, then reads the appended records once the run is done.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from streams.settings import Settings

Offsets = dict[int, int]  # partition -> offset


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    ts_ms: int  # the record's Kafka timestamp (CreateTime: when the producer created it)
    key: bytes | None
    value: bytes | None


def _consumer(settings: Settings, **extra: object) -> Consumer:
    return Consumer(
        settings.confluent_config(
            **{
                "group.id": f"perf-read-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "log_level": 3,
                **extra,
            }
        )
    )


class OutputWatch:
    """The records a topic gained since `mark()` (or since creation), from its watermarks."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self._consumer = _consumer(settings)
        self.start: Offsets = self.high()

    def partitions(self) -> list[int]:
        meta = self._consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if meta is None or meta.error is not None:
            return []
        return sorted(meta.partitions)

    def high(self, retry_s: float = 15.0) -> Offsets:
        """partition -> high watermark; retried while a new topic's partitions still elect leaders."""
        deadline = time.monotonic() + retry_s
        while True:
            try:
                return {p: self._high_of(p) for p in self.partitions()}
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _high_of(self, partition: int) -> int:
        tp = TopicPartition(self.topic, partition)
        return self._consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1]

    def mark(self) -> Offsets:
        """Count from now on; returns the new starting offsets."""
        self.start = self.high()
        return self.start

    def count(self, high: Offsets | None = None) -> int:
        high = self.high() if high is None else high
        return sum(end - self.start.get(p, 0) for p, end in high.items())

    def wait(
        self,
        n: int,
        timeout_s: float,
        alive: Callable[[], bool] = lambda: True,
        on_progress: Callable[[int], None] = lambda _n: None,
        interval_s: float = 0.1,
    ) -> bool:
        """Until at least n records were appended, the timeout passed, or `alive()` turned false."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            count = self.count()
            on_progress(count)
            if count >= n:
                return True
            if not alive():
                return False
            time.sleep(interval_s)
        return self.count() >= n

    def read(self, end: Offsets | None = None, values: bool = True, timeout_s: float = 120.0) -> list[Record]:
        """Every record from the starting offsets up to `end` (default: the current high watermarks)."""
        end = self.high() if end is None else end
        return read_range(self.settings, self.topic, self.start, end, values, timeout_s)

    def close(self) -> None:
        self._consumer.close()


def read_range(
    settings: Settings,
    topic: str,
    start: Offsets,
    end: Offsets,
    values: bool = True,
    timeout_s: float = 120.0,
) -> list[Record]:
    remaining = {p: e for p, e in end.items() if e > start.get(p, 0)}
    if not remaining:
        return []
    consumer = _consumer(settings, **{"fetch.max.bytes": 52_428_800})
    out: list[Record] = []
    try:
        consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in remaining])
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                if msg.error():
                    continue
                p, offset = msg.partition(), msg.offset()
                stop = remaining.get(p)
                if stop is None or offset >= stop:
                    continue
                out.append(Record(p, offset, msg.timestamp()[1], msg.key(), msg.value() if values else None))
                if offset + 1 >= stop:
                    del remaining[p]
    finally:
        consumer.close()
    if remaining:
        raise TimeoutError(f"could not read {topic} up to {remaining} in {timeout_s}s")
    return out


class Tail(threading.Thread):
    """Hands every record appended to a topic after `start` to `on_record`, as it arrives.

    For the learning-lag probe only, where the arrival of one record must be seen at once.
    """

    def __init__(self, settings: Settings, topic: str, start: Offsets, on_record: Callable[[Record], None]):
        super().__init__(daemon=True, name=f"tail-{topic}")
        self.settings, self.topic, self.start_offsets, self.on_record = settings, topic, start, on_record
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        consumer = _consumer(self.settings, **{"fetch.wait.max.ms": 5})
        try:
            consumer.assign([TopicPartition(self.topic, p, o) for p, o in self.start_offsets.items()])
            while not self._halt.is_set():
                for msg in consumer.consume(num_messages=1000, timeout=0.05):
                    if not msg.error():
                        self.on_record(
                            Record(msg.partition(), msg.offset(), msg.timestamp()[1], msg.key(), msg.value())
                        )
        except BaseException as exc:  # surfaced by the owner through .error
            self.error = exc
        finally:
            consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)
