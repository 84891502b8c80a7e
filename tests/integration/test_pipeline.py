"""The risk pipeline end to end on the embedded broker, with workers in child processes."""

from __future__ import annotations

import orjson
import pytest

from connectors.admin import ensure_topics, record_count
from connectors.collect import wait_for
from connectors.generate import RiskGenerator
from connectors.publish import Publisher
from streams.codecs import DLQ_REASON, dlq_payload
from streams.core.contract import validate
from streams.settings import Settings
from tests.integration.harness import Traffic, audit, counts, read_topic, topic_json, workers

pytestmark = pytest.mark.integration

DECISION_FIELDS = {
    "decision_id", "event_id", "entity", "action", "prob", "policy", "policy_version", "state_key",
    "event_ts", "decision_ts", "features", "ingest_ts",
}  # fmt: skip


def publish_generated(settings: Settings, n: int, seed: int = 1, feedback: bool = True) -> list[dict]:
    """Publish n generated events (and their labels); returns the events as dicts."""
    topics = settings.topics()
    events = []
    records = []
    for rec in RiskGenerator(seed, customers=500, terminals=200).records(n):
        if rec.kind == "event":
            events.append(orjson.loads(rec.value))
            records.append((topics.events, rec.key, rec.value))
        elif feedback:
            records.append((topics.feedback, rec.key, rec.value))
    Publisher(settings).publish(records)
    return events


def test_every_event_gets_exactly_one_decision_and_bad_input_goes_to_the_dlq(settings: Settings) -> None:
    topics = settings.topics()
    ensure_topics(settings, topics.all())
    with workers(settings, 1):
        events = publish_generated(settings, 3000, feedback=False)
        bad = [b'{"transaction_id": "t", "amount": "x"}', b"\xff\xfenot json", b"{trunc"]
        pub = Publisher(settings)
        for i, value in enumerate(bad):
            pub.send(topics.events, f"acct-bad-{i}", value)
        pub.flush()
        assert wait_for(lambda: record_count(settings, topics.actions) >= 3000, 90)
        assert wait_for(lambda: record_count(settings, topics.dlq) >= 3, 30)
        actions = topic_json(settings, topics.actions)
        dead = topic_json(settings, topics.dlq)
    ids = {a["decision_id"] for a in actions}
    assert len(actions) == len(ids) == 3000
    assert {a["event_id"] for a in actions} == {e["transaction_id"] for e in events}
    for action in actions:
        validate(action, "risk.actions")
        assert set(action) >= DECISION_FIELDS
        assert action["action"] in ("approve", "review", "decline")
        assert 0 < action["prob"] <= 1
    assert sorted(dlq_payload(orjson.dumps(d)) for d in dead) == sorted(bad)
    assert all(d["reason"] and d["source_topic"] == topics.events for d in dead)
    for d in dead:  # Avro's JSON encoding of bytes is the latin-1 text of the bytes: what the DLQ holds
        validate({**d, "payload": d["payload"].encode("latin-1")}, "risk.dlq")
    assert counts(settings)["dlq"] == 3
    assert DLQ_REASON  # the header name is part of the contract (checked in the reliability tests)


def test_feedback_moves_rows_and_a_second_worker_sees_them(settings: Settings) -> None:
    topics = settings.topics()
    ensure_topics(settings, topics.all())
    with workers(settings, 2):
        publish_generated(settings, 4000, seed=2, feedback=True)
        assert wait_for(lambda: counts(settings).get("learning_updates", 0) > 500, 120)
        # a second wave: both workers' decide agents must now read learned rows
        publish_generated(settings, 2000, seed=3, feedback=False)
        assert wait_for(lambda: record_count(settings, topics.actions) >= 6000, 120)
        actions = topic_json(settings, topics.actions)
        per_worker = [c for c in _worker_counts(settings) if c.get("decisions")]
    assert len(per_worker) == 2, "both workers must have decided on some partitions"
    learned = {}
    for action in actions:
        if action["policy_version"] > 0:
            learned.setdefault(_partition_of(settings, action["entity"]), 0)
            learned[_partition_of(settings, action["entity"])] += 1
    assert set(learned) == set(range(settings.partitions)), f"learned rows not seen everywhere: {learned}"
    changelog = f"{settings.app_id}-decisions-changelog"
    rows = topic_json(settings, changelog)
    assert rows and max(r["v"] for r in rows) > 1


def test_the_learner_forgets_marks_older_than_their_ttl(settings: Settings) -> None:
    """learned_ttl_s=1: the learner's marks of applied decisions are deleted once over a second old
    by wall-clock and event time (a tombstone each in the changelog), and every transition is still
    applied exactly once."""
    settings = settings.with_overrides(learned_ttl_s=1.0)
    ensure_topics(settings, settings.topics().all())
    traffic = Traffic(settings, events=4_000, rate=1_500)
    with workers(settings, 1) as fleet:
        traffic.start()
        audit(settings, traffic.finish(), traffic.label_ids)
        changelog = read_topic(settings, f"{settings.app_id}-learned-changelog")
        tombstones = sum(r.value is None for r in changelog)
        assert wait_for(lambda: fleet.snapshot(0)["counts"].get("learned_forgotten") == tombstones, 10)
    latest = {r.key: r.value for r in changelog}
    kept = sum(v is not None for v in latest.values())
    assert tombstones > 0.2 * len(latest), (tombstones, len(latest))  # measured: 1,117 of 3,917
    # each mark put once and deleted at most once
    assert len(changelog) == len(latest) + tombstones and kept == len(latest) - tombstones


def _worker_counts(settings: Settings) -> list[dict]:
    from streams.metrics import read_snapshots
    from tests.integration.harness import metrics_dir

    return [s["counts"] for s in read_snapshots(metrics_dir(settings))]


def _partition_of(settings: Settings, key: str) -> int:
    from connectors.partitioning import partition_for

    return partition_for(key.encode(), settings.partitions)
