"""The traffic closed loop over Kafka: `decide`/`feedback` for `run_closed_loop` through the topics.

Each control step publishes the due readings to `<prefix>traffic.events` keyed by intersection (so
every reading of an intersection lands in one partition, where its state lives) and waits until the
worker's decide agent has answered every one on `<prefix>traffic.actions`, or `timeout_s` passed:
an unanswered reading keeps its phase (the simulator counts it as missing), and an answer that
comes later is counted as stray and never applied to a later reading. Measurements go to
`<prefix>traffic.feedback`, where the join agent pairs them with the pending decisions and the
learn agent updates the decision table.

The simulator waits for each round trip, so the loop runs as fast as Kafka answers: decisions are
never stale (the state a decision sees is the state it acts on), whatever the latency.

The actions consumer uses manual assignment (no group to join or disturb), starting from the end
offsets captured before the first reading is published: it sees exactly the answers to this link.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition

from connectors.admin import end_offsets, ensure_topics
from connectors.publish import DeliveryError, Publisher
from connectors.traffic_loop import LearnConfig, LoopResult, run_closed_loop
from streams.scenarios.traffic import NAME, TrafficScenario
from streams.settings import Settings

Offsets = dict[int, tuple[int, int]]  # partition -> (low, high) watermark


def traffic_settings(
    settings: Settings,
    *,
    policy: str,
    label: str,
    epsilon: float | None = None,
    learn: LearnConfig | None = None,
) -> Settings:
    """Settings of one policy run: its own app id and topic prefix, so decision tables never mix.

    Runs that share a label share the table (training episodes and the evaluation after them).
    The worker learns with the in-process learner's gamma and step size (`LearnConfig`), so the
    Kafka and in-process results compare like for like. `producer_linger_ms=0`: a decision is one
    record per intersection, nothing to batch while the simulator waits for it.
    """
    learn = learn or LearnConfig()
    return settings.with_overrides(
        scenario=NAME,
        policy=policy,
        app_id=f"{settings.app_id}-{label}",
        topic_prefix=f"{settings.topic_prefix}{label}-",
        producer_linger_ms=0,
        epsilon=learn.epsilon if epsilon is None else epsilon,
        discount=learn.gamma,
        learning_rate=learn.alpha,
    )


@dataclass
class LinkStats:
    """What one run sent and got back; latency is publish -> action received, per decision."""

    readings: int = 0
    answered: int = 0
    feedback: int = 0
    stray: int = 0  # answers to no current reading: late after a timeout, or re-delivered
    latencies_ms: list[float] = field(default_factory=list)


class KafkaLink:
    """One simulation's connection to a traffic worker; use as a context manager."""

    def __init__(self, settings: Settings, scenario: TrafficScenario | None = None, timeout_s: float = 5.0):
        self.settings = settings
        self.scenario = scenario or TrafficScenario()
        self.topics = settings.topics(NAME)
        self.timeout_s = timeout_s
        self.stats = LinkStats()
        self.publisher: Publisher | None = None
        self.consumer: Consumer | None = None

    def start(self) -> KafkaLink:
        ensure_topics(self.settings, self.topics.all())
        ends = _end_offsets_once_led(self.settings, self.topics.actions)
        self.publisher = Publisher(self.settings, **{"linger.ms": 0})
        self.consumer = Consumer(
            self.settings.confluent_config(
                **{
                    "group.id": f"agentstream-traffic-link-{id(self)}",  # required; never joined
                    "enable.auto.commit": False,
                    "fetch.wait.max.ms": 10,
                    "log_level": 3,
                }
            )
        )
        self.consumer.assign([TopicPartition(self.topics.actions, p, high) for p, (_, high) in ends.items()])
        return self

    def close(self) -> None:
        """Flush what is still in flight (raises DeliveryError if records were lost) and disconnect."""
        try:
            if self.publisher is not None:
                self.publisher.flush()
        finally:
            if self.consumer is not None:
                self.consumer.close()
            self.publisher = self.consumer = None

    def __enter__(self) -> KafkaLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> LinkStats:
        """Start counting a new run; returns the previous run's counts."""
        done, self.stats = self.stats, LinkStats()
        return done

    # --- the seam of connectors.traffic_loop ----------------------------------------------------
    def publish_readings(self, events: list[bytes]) -> None:
        """Readings to the events topic, keyed by intersection; no answer awaited."""
        pub = self._publisher()
        for raw in events:
            pub.send(self.topics.events, self.scenario.parse(raw).intersection_id, raw)
        pub.producer.poll(0)
        self.stats.readings += len(events)

    def decide(self, events: list[bytes]) -> list[dict[str, Any]]:
        """Publish the step's readings; return the actions that came back within the timeout."""
        sc = self.scenario
        expected = {sc.decision_id(sc.parse(raw)) for raw in events}
        started = time.perf_counter()
        self.publish_readings(events)
        got = self._await_actions(expected, started)
        self.stats.answered += len(got)
        return got

    def feedback(self, records: list[bytes]) -> None:
        """Measurements to the feedback topic, keyed by intersection (co-partitioned with readings)."""
        pub = self._publisher()
        for raw in records:
            pub.send(self.topics.feedback, self.scenario.parse_outcome(raw).intersection_id, raw)
        self.stats.feedback += len(records)

    # --- internals --------------------------------------------------------------------------
    def _await_actions(self, expected: set[str], started: float) -> list[dict[str, Any]]:
        consumer = self.consumer
        assert consumer is not None, "KafkaLink not started"
        got: dict[str, dict[str, Any]] = {}
        deadline = started + self.timeout_s
        while len(got) < len(expected):
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            # poll, not consume(n): a batch consume waits for all n records or the whole timeout.
            msg = consumer.poll(min(remaining, 0.1))
            if msg is None:
                continue
            if msg.error():
                if msg.error().fatal():
                    raise KafkaException(msg.error())
                continue
            action = orjson.loads(msg.value())
            decision_id = action["decision_id"]
            if decision_id in expected and decision_id not in got:
                got[decision_id] = action
                self.stats.latencies_ms.append((time.perf_counter() - started) * 1000.0)
            else:
                self.stats.stray += 1
        self._check_deliveries()
        return list(got.values())

    def _publisher(self) -> Publisher:
        assert self.publisher is not None, "KafkaLink not started"
        return self.publisher

    def _check_deliveries(self) -> None:
        result = self._publisher().result
        if result.failed:
            raise DeliveryError(f"{result.failed} records failed: {'; '.join(result.errors[:5])}")


def _end_offsets_once_led(settings: Settings, topic: str, timeout_s: float = 30.0) -> Offsets:
    """End offsets of a topic; a topic created a moment ago may not have its leaders elected yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ends = end_offsets(settings, topic)
            if ends:
                return ends
        except KafkaException:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} has no partitions after {timeout_s}s")
        time.sleep(0.2)


def run_over_kafka(
    link: KafkaLink,
    net: str,
    policy: str,
    duration_s: int,
    seed: int,
    *,
    run: str,
    feedback: bool = True,
    **loop: Any,
) -> LoopResult:
    """One simulation whose signals are decided by the worker behind `link`.

    `policy="fixed_time"` is the signal's own program: the connector applies the plan and only
    publishes the readings (nothing to decide, so nothing to wait for). `loop` goes to
    `run_closed_loop` (cache_dir, out_dir, epoch0, ...). The link's counts land in `result.extra`.
    """
    link.reset()
    if policy == "fixed_time":
        result = run_closed_loop(
            net, policy, duration_s, seed, scenario=link.scenario, run=run, tap=link.publish_readings, **loop
        )
    else:
        result = run_closed_loop(
            net, policy, duration_s, seed, link.decide, link.feedback if feedback else None,
            scenario=link.scenario, run=run, **loop,
        )  # fmt: skip
    stats = link.reset()
    result.extra |= {
        "published": stats.readings,
        "answered": stats.answered,
        "feedback": stats.feedback,
        "stray": stats.stray,
        "latencies_ms": stats.latencies_ms,
    }
    return result
