"""An open-loop load generator: events sent on a fixed Poisson schedule, stamped with that schedule.

Open loop means the schedule never waits for the system: if the sender or the worker falls behind,
later events are still due at their scheduled times. Each event's Kafka timestamp IS its scheduled
send time (confluent-kafka's `timestamp=`); the decide agent copies its event's Kafka timestamp into
the action (`ingest_ts`), so action time - ingest_ts is the latency from the scheduled send,
including any time the event waited to be sent: coordinated omission avoided without touching the
agents. Poisson arrivals are also what the M/M/1 model the validation compares with assumes.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import Producer

from streams.settings import Settings

SEND_LINGER_MS = 1  # the sender's own batching delay, part of every measured latency


def poisson_schedule(n: int, rate: float, start: float, seed: int) -> list[float]:
    """n arrival times (epoch seconds) of a Poisson process of `rate` per second from `start`."""
    rng = random.Random(seed)
    t, out = start, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append(t)
    return out


@dataclass
class SendReport:
    sent: int
    max_behind_ms: float  # the worst lateness of a send against its schedule (the sender's own lag)
    seconds: float


def send_on_schedule(
    settings: Settings, topic: str, events: list[tuple[str, bytes]], schedule: list[float]
) -> SendReport:
    """Send events[i] at schedule[i] (or as soon after as possible) with timestamp schedule[i]."""
    timed = ((due, topic, key, value) for (key, value), due in zip(events, schedule, strict=True))
    return send_timed(settings, timed)


# (scheduled send time in epoch seconds, topic, key, value); the times must not decrease
Timed = tuple[float, str, str | bytes | None, bytes]


def send_timed(
    settings: Settings,
    records: Iterable[Timed],
    halt: threading.Event | None = None,
    sent: Counter[str] | None = None,
) -> SendReport:
    """Send each record at its scheduled time (or as soon after as possible), stamped with that time.

    `records` may be an endless generator: the sender looks one record ahead. `halt` stops it early;
    `sent` (topic -> records handed to the producer) is updated as it goes, for a live reader.
    """
    producer = Producer(
        settings.producer_config(partitioner="murmur2_random", log_level=3, **{"linger.ms": SEND_LINGER_MS})
    )
    produce, poll, now = producer.produce, producer.poll, time.time
    counts: Counter[str] = Counter() if sent is None else sent
    behind, n = 0.0, 0
    started = now()
    pending = iter(records)
    head = next(pending, None)
    while head is not None and not (halt is not None and halt.is_set()):
        t = now()
        while head is not None and head[0] <= t:
            due, topic, key, value = head
            try:
                produce(topic, value=value, key=key, timestamp=int(due * 1000))
            except BufferError:
                poll(0.01)
                continue
            behind = max(behind, now() - due)
            counts[topic] += 1
            n += 1
            head = next(pending, None)
        poll(0)
        if head is not None:
            wait = head[0] - now()
            if wait > 0:
                time.sleep(min(wait, 0.002))
    producer.flush(60)
    return SendReport(sent=n, max_behind_ms=round(behind * 1000.0, 1), seconds=round(now() - started, 3))
