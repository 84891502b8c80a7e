"""Bad input never crashes a worker: every bad record reaches the DLQ, traceable to its source.

The corpus (tests/data/bad_records.py) is published interleaved with good traffic to a live worker.
Every bad record must come out of `<scenario>.dlq` with its original bytes, the source
topic/partition/offset and a reason; the good records around it are processed (the audit); the
worker is the same process at the end, with no crash in its log; the DLQ metric counts them all.

Duplicates are not bad input: a transaction id seen again while its decision is pending (or was
judged recently) is the same decision delivered again; the worker re-emits the kept action (same
decision_id, same action) and does not fold the duplicate into the account's state. A duplicate
label is recognised and learned once.
"""

from __future__ import annotations

import orjson
import pytest

from connectors.admin import ensure_topics
from connectors.collect import wait_for
from connectors.generate import RiskGenerator
from connectors.publish import Publisher
from streams.codecs import DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC, dlq_payload
from streams.scenarios.risk import decision_id_for
from streams.settings import Settings
from tests.data.bad_records import BAD_EVENTS, BAD_LABELS, GOOD_KEY, GOOD_LABEL, GOOD_TX, BadRecord
from tests.integration.harness import audit, counts, read_topic, workers

pytestmark = pytest.mark.integration

KIND = "test.kind"  # header naming what the test published, so the topics can be read back
DUP = GOOD_TX | {"transaction_id": "dup-1"}


def test_bad_records_go_to_the_dlq_and_the_worker_carries_on(settings: Settings) -> None:
    topics = settings.topics()
    ensure_topics(settings, topics.all())
    # a 1 MiB record must reach the topic for the worker to reject it
    publisher = Publisher(settings, **{"message.max.bytes": 4 << 20})
    good = (r for r in RiskGenerator(5, customers=500, terminals=200).records(100_000) if r.kind == "event")
    good_ids: list[str] = []

    def send_good(n: int) -> None:
        for rec in (next(good) for _ in range(n)):
            good_ids.append(orjson.loads(rec.value)["transaction_id"])
            publisher.send(topics.events, rec.key, rec.value, [(KIND, b"good")])

    def send_bad(topic: str, bad: BadRecord) -> None:
        publisher.send(topic, bad.key, bad.value, [(KIND, b"bad:" + bad.name.encode())])  # type: ignore[arg-type]

    with workers(settings, 1) as fleet:
        pid = fleet.procs[0].pid
        for bad in BAD_EVENTS:
            send_good(20)
            send_bad(topics.events, bad)
        for bad in BAD_LABELS:
            send_bad(topics.feedback, bad)
        send_good(20)
        dup = orjson.dumps(DUP)
        for value in (dup, dup, orjson.dumps(DUP | {"amount": 99.0})):  # the first, a retry, a replay
            publisher.send(topics.events, GOOD_KEY, value, [(KIND, b"good")])
        publisher.flush()
        assert wait_for(lambda: counts(settings).get("duplicate_events", 0) == 2, 60), counts(settings)
        dup_label = orjson.dumps(GOOD_LABEL | {"transaction_id": "dup-1"})
        for _ in range(2):
            publisher.send(topics.feedback, GOOD_KEY, dup_label, [(KIND, b"good")])
        publisher.flush()
        assert wait_for(lambda: counts(settings).get("feedback_duplicate", 0) == 1, 60), counts(settings)
        result = audit(settings, [*good_ids, "dup-1"])
        assert fleet.procs[0].poll() is None and fleet.procs[0].pid == pid
        log = fleet.log(0).read_text(errors="replace")
        assert "Traceback" not in log and "CRITICAL" not in log, log[-3000:]

    bad_total = len(BAD_EVENTS) + len(BAD_LABELS)
    assert result.counters["dlq"] == bad_total
    assert result.counters.get("internal_errors", 0) == 0
    assert result.counters["duplicate_events"] == 2 and result.counters["feedback_duplicate"] == 1
    _check_dead_letters(settings)
    _check_duplicates(settings)
    print(f"\nbad input: {bad_total} bad records dead-lettered; {result.line()}")


def _check_dead_letters(settings: Settings) -> None:
    """DLQ records == bad records published, each with its bytes, its source and the right reason."""
    topics = settings.topics()
    corpus = {b.name: b for b in BAD_EVENTS + BAD_LABELS}
    published: dict[tuple[str, int, int], tuple[BadRecord, bytes | None]] = {}
    for topic in (topics.events, topics.feedback):
        for rec in read_topic(settings, topic):
            kind = rec.headers[KIND].decode()
            if kind.startswith("bad:"):
                published[topic, rec.partition, rec.offset] = (corpus[kind[4:]], rec.value)
    dead = read_topic(settings, topics.dlq)
    sources = {}
    for rec in dead:
        h = rec.headers
        source = (h[DLQ_TOPIC].decode(), int(h[DLQ_PARTITION]), int(h[DLQ_OFFSET]))
        sources[source] = rec
        bad, original = published[source]
        assert dlq_payload(rec.value) == (original or b""), bad.name
        assert bad.reason in h[DLQ_REASON].decode(), (bad.name, h[DLQ_REASON])
        body = orjson.loads(rec.value)
        assert (body["source_topic"], body["partition"], body["offset"]) == source
    assert len(dead) == len(sources) == len(published) and set(sources) == set(published)


def _check_duplicates(settings: Settings) -> None:
    """The duplicates of `dup-1` were answered with the kept decision; its label was learned once."""
    topics = settings.topics()
    actions = [orjson.loads(r.value) for r in read_topic(settings, topics.actions)]
    dups = [a for a in actions if a["event_id"] == "dup-1"]
    assert len(dups) == 3
    assert len({(a["decision_id"], a["action"], a["features"]["amount"]) for a in dups}) == 1
    assert dups[0]["decision_id"] == decision_id_for("dup-1")
    learned = [orjson.loads(r.value) for r in read_topic(settings, topics.learning)]
    assert [t["decision_id"] for t in learned].count(decision_id_for("dup-1")) == 1
