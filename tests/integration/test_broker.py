"""The embedded broker is a real Kafka that answers clients, and its JVMs never outlive their owner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.admin import ensure_topics, record_count
from streams.settings import Settings

pytestmark = pytest.mark.integration

OWNER = """
import sys, time
from connectors.broker import EmbeddedKafka
cluster = EmbeddedKafka(brokers=1)
cluster.start()
print(" ".join(map(str, cluster.pids())), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead, just not reaped yet
        return fh.read().split()[2] != "Z"


def test_round_trip_through_the_embedded_broker(settings: Settings) -> None:
    topic = f"{settings.topic_prefix}roundtrip"
    ensure_topics(settings, [topic], partitions=2)
    producer = Producer(settings.producer_config(partitioner="murmur2_random"))
    for i in range(100):
        producer.produce(topic, key=f"k{i}", value=f"v{i}".encode())
    assert producer.flush(30) == 0
    assert record_count(settings, topic) == 100
    consumer = Consumer(settings.confluent_config(**{"group.id": "rt", "auto.offset.reset": "earliest"}))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(2)])
    values: set[bytes] = set()
    deadline = time.monotonic() + 30
    while len(values) < 100 and time.monotonic() < deadline:
        values.update(m.value() for m in consumer.consume(500, timeout=1) if not m.error())
    consumer.close()
    assert values == {f"v{i}".encode() for i in range(100)}


def test_no_jvm_outlives_a_killed_owner() -> None:
    """SIGKILL the Python process that owns the broker: the kernel must take the JVM down too."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    try:
        line = owner.stdout.readline()  # type: ignore[union-attr]
        pids = [int(p) for p in line.split()]
        assert pids and all(_alive(p) for p in pids)
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        deadline = time.monotonic() + 15
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in pids), "a broker JVM outlived its owner"
    finally:
        if owner.poll() is None:
            owner.kill()


def test_context_manager_stops_the_cluster(settings: Settings) -> None:
    from connectors.broker import EmbeddedKafka

    with EmbeddedKafka(brokers=1, settings=settings) as cluster:
        pids = cluster.pids()
        assert all(_alive(p) for p in pids)
        assert cluster.bootstrap.startswith("127.0.0.1:")
    assert not any(_alive(p) for p in pids)
