"""Reading a topic back in a background thread: what the demo, the bench and the tests count.

It uses its own consumer with manual assignment (no group), so it never joins or disturbs the
application's consumer group.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streams.settings import Settings


class TopicCollector(threading.Thread):
    """Consumes every partition of `topic` from the beginning and hands each record to `on_record`.

    `on_record(key, value, timestamp_s, headers, partition, offset)` runs in this thread.
    """

    def __init__(self, settings: Settings, topic: str, on_record: Callable[..., None]) -> None:
        super().__init__(daemon=True, name=f"collect-{topic}")
        self.settings = settings
        self.topic = topic
        self.on_record = on_record
        self.count = 0
        self.last_record_at = 0.0
        self._halt = threading.Event()
        self.assigned = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        consumer = Consumer(
            self.settings.confluent_config(
                **{
                    "group.id": f"agentstream-collect-{id(self)}",
                    "enable.auto.commit": False,
                    "log_level": 3,
                    "fetch.wait.max.ms": 20,
                }
            )
        )
        try:
            meta = None
            while meta is None and not self._halt.is_set():
                topic_meta = consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
                if topic_meta is not None and topic_meta.error is None and topic_meta.partitions:
                    meta = topic_meta
                else:
                    time.sleep(0.2)
            if meta is None:
                return
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in meta.partitions])
            self.assigned.set()
            while not self._halt.is_set():
                for msg in consumer.consume(num_messages=5000, timeout=0.1):
                    if msg.error():
                        continue
                    self.count += 1
                    self.last_record_at = time.time()
                    self.on_record(
                        msg.key(), msg.value(), msg.timestamp()[1] / 1000.0, msg.headers(), msg.partition(),
                        msg.offset(),
                    )  # fmt: skip
        except BaseException as exc:  # surfaced by the caller through .error
            self.error = exc
        finally:
            consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=15)


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def collect_values(settings: Settings, topic: str, decode: Callable[[bytes], Any] = bytes) -> list[Any]:
    """Everything currently in a topic (small topics; tests and reports)."""
    from connectors.admin import record_count

    expected = record_count(settings, topic)
    values: list[Any] = []
    collector = TopicCollector(settings, topic, lambda k, v, *rest: values.append(decode(v)))
    collector.start()
    wait_for(lambda: len(values) >= expected, timeout_s=60)
    collector.stop()
    return values
