"""Replay, reset and snapshots on the embedded broker."""

from __future__ import annotations

import time

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.admin import ensure_topics, record_count
from connectors.collect import wait_for
from connectors.generate import RiskGenerator
from connectors.publish import Publisher
from streams.core.table import Row
from streams.replay.backtest import Topics, backtest, run_backtest
from streams.replay.groups import GroupActive
from streams.replay.report import to_json
from streams.replay.reset import execute, parse_target, plan
from streams.replay.snapshot import changelog_topic, from_settings, live_rows, promote, save, write
from streams.replay.sources import (
    Bound,
    ScenarioRange,
    read_live_actions,
    read_scenario,
    read_topic,
    resolve_range,
)
from streams.scenarios.risk import ACTIONS, decision_id_for
from streams.settings import Settings
from tests.integration.harness import workers

pytestmark = pytest.mark.integration

T0_MS = 1_704_067_200_000


def test_replaying_a_live_rules_run_reproduces_its_decisions(settings: Settings) -> None:
    """Live decisions are made before any label arrives (labels are published, and stamped, after the
    last event), so the replay's event-time merge must see exactly what live saw."""
    settings = settings.with_overrides(policy="rules")
    topics = settings.topics()
    ensure_topics(settings, topics.all())
    records = list(RiskGenerator(4, customers=300, terminals=120).records(2_500))
    events = [r for r in records if r.kind == "event"]
    last_ts = max(r.sim_ts for r in events)
    labels = []
    for i, r in enumerate(rec for rec in records if rec.kind == "feedback"):
        label = orjson.loads(r.value) | {"label_ts": last_ts + 1 + i * 0.001}
        labels.append((topics.feedback, r.key, orjson.dumps(label)))
    with workers(settings, 1):
        Publisher(settings).publish((topics.events, r.key, r.value) for r in events)
        assert wait_for(lambda: record_count(settings, topics.actions) >= len(events), 90)
        Publisher(settings).publish(labels)
        assert wait_for(lambda: record_count(settings, topics.learning) >= len(labels), 90)
    read = read_scenario(settings)
    assert (read.events, read.feedback) == (len(events), len(labels))
    live = read_live_actions(settings, ACTIONS)
    expected_ids = {decision_id_for(orjson.loads(r.value)["transaction_id"]) for r in events}
    assert set(live) == expected_ids
    report = run_backtest(settings, read.records, ["rules", "qtable"], live=live).report
    assert report["rules"]["agreement"] == {"compared": len(events), "matched": len(events), "rate": 1.0}
    assert report["live"]["reward"] == report["rules"]["reward"]
    assert report["ope"]["rules"]["ips"]["value"] == pytest.approx(report["ope"]["live_value"])
    assert report["input"]["feedback"]["joined"] == len(labels)


def _produce_timed(settings: Settings, topic: str, partitions: int, per_partition: int) -> list[tuple]:
    """Records with known timestamps: partition p, i-th record at T0 + (i * partitions + p) seconds."""
    ensure_topics(settings, [topic], partitions=partitions)
    producer = Producer(settings.producer_config())
    sent = []
    for i in range(per_partition):
        for p in range(partitions):
            ts = T0_MS + (i * partitions + p) * 1000
            producer.produce(
                topic, key=f"k{p}".encode(), value=f"v{p}-{i}".encode(), partition=p, timestamp=ts
            )
            sent.append((p, i, ts))
    assert producer.flush(30) == 0
    return sent


def test_a_time_range_read_returns_exactly_the_records_in_range(settings: Settings) -> None:
    topic = f"{settings.topic_prefix}ranged"
    sent = _produce_timed(settings, topic, partitions=3, per_partition=20)
    start, end = T0_MS + 10_000, T0_MS + 31_000
    ranges = resolve_range(settings, topic, Bound(time_ms=start), Bound(time_ms=end))
    got = sorted((r.partition, r.offset, r.timestamp_ms) for r in read_topic(settings, topic, ranges))
    assert got == sorted((p, i, ts) for p, i, ts in sent if start <= ts < end)
    by_offset = resolve_range(settings, topic, Bound(offset=5), Bound(offset=8))
    got = sorted((r.partition, r.offset) for r in read_topic(settings, topic, by_offset))
    assert got == [(p, o) for p in range(3) for o in range(5, 8)]


def test_reset_moves_offsets_exactly_as_planned_and_refuses_live_members(settings: Settings) -> None:
    topic = f"{settings.topic_prefix}resettable"
    _produce_timed(settings, topic, partitions=2, per_partition=10)
    group = f"{settings.app_id}-reset"
    base = settings.confluent_config(**{"group.id": group, "enable.auto.commit": False, "log_level": 3})
    committer = Consumer(base)
    committer.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 7)], asynchronous=False)
    committer.close()

    # the first record at or after T0 + 9 s: partition 0's 6th (T0 + 10 s), partition 1's 5th (T0 + 9 s)
    rows = plan(settings, group, parse_target("2024-01-01T00:00:09Z"))
    assert [(r.topic, r.partition, r.current, r.target) for r in rows] == [(topic, 0, 3, 5), (topic, 1, 7, 4)]
    assert execute(settings, group, rows) == {(topic, 0): 5, (topic, 1): 4}
    rows = plan(settings, group, parse_target("1=2,0=99"))
    assert [(r.partition, r.current, r.target) for r in rows] == [(0, 5, 10), (1, 4, 2)]
    assert "clamped" in rows[0].note
    assert execute(settings, group, rows) == {(topic, 0): 10, (topic, 1): 2}
    assert [r.target for r in plan(settings, group, parse_target("earliest"))] == [0, 0]

    member = Consumer(base | {"session.timeout.ms": 6000})
    try:
        member.subscribe([topic])
        deadline = time.monotonic() + 30
        while not member.assignment() and time.monotonic() < deadline:
            member.poll(0.2)
        assert member.assignment(), "the consumer never joined its group"
        with pytest.raises(GroupActive, match="live member"):
            execute(settings, group, plan(settings, group, parse_target("latest")))
    finally:
        member.close()


def test_snapshot_promote_then_save_round_trips_through_the_changelog(settings: Settings, tmp_path) -> None:
    topic = changelog_topic(settings)
    ensure_topics(settings, [topic], config={"cleanup.policy": "compact"})
    stale = Row.empty(3)
    stale.q[2] = -1.0
    producer = Producer(settings.producer_config())
    producer.produce(topic, key=b"stale|key", value=orjson.dumps(stale.to_dict()), partition=0)
    assert producer.flush(30) == 0
    rows = {}
    for i in range(5):
        q = [-float(i), -5.0, -20.0]
        rows[f"a{i}|v0|z0|t0|n0|c0"] = Row(q=q, n=[i, 1, 1], mean=list(q), m2=[0.0] * 3, version=i + 2)
    path = write(from_settings(settings, rows, ACTIONS, source="test"), tmp_path / "table.json")
    assert promote(settings, path) == 5
    assert live_rows(settings) == rows  # the stale key was tombstoned
    saved = save(settings, tmp_path / "saved.json")
    assert saved.rows == rows and saved.policy == settings.policy
    with pytest.raises(ValueError, match="the app runs"):
        promote(settings.with_overrides(scenario="traffic"), path)


def test_a_topic_replay_reads_columns_and_matches_the_per_record_replay(settings: Settings) -> None:
    """The columnar engine reads the topics as joined lines (in a child process); records that are
    not the generator's shape (a newline or a quote in the value, a quote in or no key, bad UTF-8)
    take the per-record path: the report equals the per-event engine's on the same records."""
    topics = settings.topics()
    ensure_topics(settings, topics.all())
    records = list(RiskGenerator(9, customers=300, terminals=120).records(6_000))
    odd = [
        (topics.events, b"acct-1", b'{"transaction_id":\n"x"}'),
        (topics.events, None, b"\xff\xfe not json"),
        (topics.feedback, b'q"k\\', b'{"transaction_id":"none","is_fraud":true}'),
        (topics.feedback, None, records[-1].value),
    ]
    published = [(topics.events if r.kind == "event" else topics.feedback, r.key, r.value) for r in records]
    published[7] = (published[7][0], b'a"b', published[7][2])  # a quote in a key
    Publisher(settings).publish(published[:3_000] + odd + published[3_000:])
    scenario_range = ScenarioRange(settings)
    columnar = backtest(settings, Topics(scenario_range), ["rules", "qtable"], engine="columnar")
    assert columnar.engine == "columnar"
    per_record = run_backtest(
        settings, ScenarioRange(settings).records(), ["rules", "qtable"], engine="scalar"
    )
    assert columnar.records == per_record.records == len(records) + len(odd)
    assert (scenario_range.events, scenario_range.feedback) == (
        sum(t == topics.events for t, _, _ in published + odd),
        sum(t == topics.feedback for t, _, _ in published + odd),
    )
    assert to_json(columnar.report) == to_json(per_record.report)
    assert sum(columnar.report["input"]["invalid"].values()) >= 3
