"""Test helpers: workers in child processes that are always stopped, a live load, topic readers, and
the audit that proves the guarantees (nothing lost, nothing applied twice) from what is in Kafka."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from connectors.admin import group_lag, group_offsets  # group_lag re-exported: tests import it from here
from connectors.collect import collect_values, wait_for
from connectors.generate import RiskGenerator
from connectors.process import spawn_worker, stop
from connectors.publish import Publisher
from streams.codecs import loads
from streams.core.scenario import InvalidEvent
from streams.demo import worker_env
from streams.metrics import read_all, read_snapshots
from streams.scenarios.risk import RiskScenario, decision_id_for
from streams.settings import Settings


def metrics_dir(settings: Settings) -> Path:
    return settings.metrics_path


# --- workers ---------------------------------------------------------------------------------------


class Fleet:
    """Worker slots in child processes. A slot keeps its state directory (RocksDB) and log file across
    restarts, as a restarted pod keeps its volume; `stop(slot, SIGKILL)` is the crash."""

    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.env = env or {}
        self.logs = settings.data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[int, Popen[bytes]] = {}

    def state_dir(self, slot: int) -> Path:
        return self.settings.data_dir / f"worker-{slot}"

    def log(self, slot: int) -> Path:
        return self.logs / f"worker-{slot}.log"

    def start(self, slot: int) -> Popen[bytes]:
        env = worker_env(self.settings) | {
            "AGENTSTREAM_DATA_DIR": str(self.state_dir(slot)),
            "AGENTSTREAM_METRICS_DIR": str(metrics_dir(self.settings)),
        }
        # AGENTSTREAM_TEST_WORKER_LOGLEVEL=info: the workers' logs (kept in pytest's tmp_path) say
        # which batches the lanes dropped or skipped and when partitions moved.
        level = os.environ.get("AGENTSTREAM_TEST_WORKER_LOGLEVEL", "warning")
        self.procs[slot] = spawn_worker(env | self.env, self.log(slot), "--loglevel", level)
        return self.procs[slot]

    def stop(self, slot: int, sig: int = signal.SIGTERM) -> int:
        return stop(self.procs[slot], sig)

    def restart(self, slot: int, timeout_s: float = 90.0) -> float:
        """Start the slot again and wait until every live worker is ready; returns the seconds taken."""
        began = time.monotonic()
        self.start(slot)
        self.wait_ready(timeout_s)
        return time.monotonic() - began

    def live(self) -> list[Popen[bytes]]:
        return [p for p in self.procs.values() if p.poll() is None]

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        ok = wait_for(lambda: _all_ready(self.settings, self.live()), timeout_s, 0.2)
        assert ok, f"workers not ready in {timeout_s}s: {self.tails()}"

    def snapshot(self, slot: int) -> dict[str, Any]:
        """The latest metrics the slot's current process wrote (empty before its first report)."""
        pid = self.procs[slot].pid
        return next((s for s in read_snapshots(metrics_dir(self.settings)) if s.get("pid") == pid), {})

    def close(self) -> None:
        for proc in self.procs.values():
            stop(proc)

    def tails(self, chars: int = 6000) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in sorted(self.logs.glob("*.log"))
        )

    def grep(self, text: str) -> str:
        """The workers' log lines that contain `text`, by log file."""
        return "\n".join(
            f"{p.name}: {line}"
            for p in sorted(self.logs.glob("*.log"))
            for line in p.read_text(errors="replace").splitlines()
            if text in line
        )

    def show_failure(self) -> None:
        """For a failed test: the live workers' stacks into their logs, and the logs' tails printed
        (pytest shows them with the failure)."""
        self.dump_stacks()
        print(f"full worker logs (with their stacks) in {self.logs}")
        print(self.tails())

    def dump_stacks(self) -> None:
        """Live workers write their threads' stacks and their asyncio tasks' await chains to their
        logs: where a stalled worker waits."""
        for proc in self.live():
            proc.send_signal(signal.SIGUSR1)  # every thread's stack (mode)
            proc.send_signal(signal.SIGUSR2)  # every task's await chain (streams/taskdump.py)
        time.sleep(2)


@contextlib.contextmanager
def workers(
    settings: Settings, n: int = 1, timeout_s: float = 90.0, env: dict[str, str] | None = None
) -> Iterator[Fleet]:
    """Start n workers and wait until every one has partitions and recovered tables."""
    fleet = Fleet(settings, env)
    try:
        for slot in range(n):
            fleet.start(slot)
        fleet.wait_ready(timeout_s)
        yield fleet
    except BaseException:
        fleet.show_failure()
        raise
    finally:
        fleet.close()


def _all_ready(settings: Settings, procs: list[Popen[bytes]]) -> bool:
    for proc in procs:
        assert proc.poll() is None, f"worker exited with {proc.returncode}"
    live = {p.pid for p in procs}
    snaps = [s for s in read_snapshots(metrics_dir(settings)) if s.get("pid") in live]
    return len(snaps) == len(procs) and all(s.get("ready") for s in snaps)


def counts(settings: Settings) -> dict[str, int]:
    return read_all(metrics_dir(settings))


# --- load ------------------------------------------------------------------------------------------


class Traffic(threading.Thread):
    """Generated transactions and their labels published at a steady rate in the background: the
    live load the fault tests inject their faults into. `rate` counts records (events + labels)."""

    def __init__(
        self, settings: Settings, events: int, rate: float, seed: int = 1, label_delay_s: float = 5.0
    ) -> None:
        super().__init__(daemon=True, name="traffic")
        self.settings = settings
        self.events = events
        self.rate = rate
        self.generator = RiskGenerator(seed, customers=500, terminals=200, label_delay_mean_s=label_delay_s)
        self.event_ids: list[str] = []
        self.label_ids: list[str] = []  # the transactions whose label was published
        self.error: BaseException | None = None

    def run(self) -> None:
        topics = self.settings.topics()
        try:
            Publisher(self.settings).publish(self._records(topics.events, topics.feedback), rate=self.rate)
        except BaseException as exc:  # surfaced by `finish`
            self.error = exc

    def _records(self, events: str, feedback: str) -> Iterator[tuple[str, str, bytes]]:
        for rec in self.generator.records(self.events):
            if rec.kind == "event":
                self.event_ids.append(orjson.loads(rec.value)["transaction_id"])
                yield events, rec.key, rec.value
            else:
                self.label_ids.append(orjson.loads(rec.value)["transaction_id"])
                yield feedback, rec.key, rec.value

    def progress(self) -> int:
        return len(self.event_ids)

    def finish(self, timeout_s: float = 120.0) -> list[str]:
        """Wait until everything is published; the event ids, in publishing order."""
        self.join(timeout_s)
        assert not self.is_alive(), "the publisher did not finish"
        if self.error is not None:
            raise self.error
        return self.event_ids


# --- reading topics back ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rec:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    timestamp: float  # seconds


def read_topic(settings: Settings, topic: str, timeout_s: float = 60.0) -> list[Rec]:
    """Every committed record of a topic, in partition/offset order.

    Reads until the consumer's position reaches each partition's end, which also steps over
    transaction markers and aborted records (counting watermarks would not).
    """
    consumer = Consumer(
        settings.confluent_config(
            **{"group.id": f"audit-{time.monotonic_ns()}", "enable.auto.commit": False, "log_level": 3}
        )
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        tps = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        consumer.assign(tps)
        out: list[Rec] = []
        deadline = time.monotonic() + timeout_s
        while not _at_end(consumer, topic, ends):
            assert time.monotonic() < deadline, f"could not read {topic} to its end in {timeout_s}s"
            for msg in consumer.consume(5000, timeout=0.2):
                if msg.error() is None:
                    headers = {k: v for k, v in msg.headers() or ()}
                    ts = msg.timestamp()[1] / 1000.0
                    out.append(Rec(msg.partition(), msg.offset(), msg.key(), msg.value(), headers, ts))
        out.sort(key=lambda r: (r.partition, r.offset))
        return out
    finally:
        consumer.close()


def _at_end(consumer: Consumer, topic: str, ends: dict[int, int]) -> bool:
    positions = consumer.position([TopicPartition(topic, p) for p in ends])
    return all(tp.offset >= ends[tp.partition] or ends[tp.partition] == 0 for tp in positions)


def latest_values(settings: Settings, topic: str, records: list[Rec] | None = None) -> dict[bytes, Any]:
    """The latest decoded value per key of a (compacted) changelog; a key must live in one partition."""
    latest: dict[bytes, tuple[int, Any]] = {}
    for rec in read_topic(settings, topic) if records is None else records:
        assert rec.key is not None
        seen = latest.get(rec.key)
        assert seen is None or seen[0] == rec.partition, f"{rec.key!r} in two partitions"
        latest[rec.key] = (rec.partition, None if rec.value is None else loads(rec.value))
    return {k: v for k, (_, v) in latest.items() if v is not None}


def topic_json(settings: Settings, topic: str) -> list[dict]:
    return collect_values(settings, topic, loads)


def wait_drained(settings: Settings, timeout_s: float = 120.0, markers: bool = False) -> None:
    """Until the app has consumed and committed every input, learning included: all outputs and
    table changes are in Kafka then (a batch is committed only after they are acknowledged)."""
    topics = settings.topics()
    inputs = (topics.events, topics.feedback, topics.learning)

    def drained() -> bool:
        if markers:  # the gap to the end may be commit/abort markers and aborted records: read it
            return group_lag(settings, inputs, markers) == 0 or unread_committed(settings, inputs) == 0
        return group_lag(settings, inputs) == 0

    assert wait_for(drained, timeout_s, 0.5), (
        f"lag {group_lag(settings, inputs)} after {timeout_s}s: {behind(settings, inputs)}"
    )


def behind(settings: Settings, topics: Collection[str]) -> dict[str, tuple[int, int]]:
    """'topic-partition' -> (committed offset, end offset) of the app group's partitions not at their end."""
    return {
        f"{tp.topic}-{tp.partition}": (tp.offset, high)
        for tp, _, high in group_offsets(settings, topics)
        if tp.offset < high
    }


def _where(settings: Settings, topic: str, event_ids: set[str]) -> dict[int, tuple[int, int, int]]:
    """Partition -> (first offset, last offset, count) of the records of `topic` with these event ids."""
    spans: dict[int, tuple[int, int, int]] = {}
    for rec in read_topic(settings, topic):
        if rec.value is not None and loads(rec.value).get("transaction_id") in event_ids:
            first, _, n = spans.get(rec.partition, (rec.offset, 0, 0))
            spans[rec.partition] = (first, rec.offset, n + 1)
    return spans


def unread_committed(settings: Settings, topics: Collection[str], timeout_s: float = 2.0) -> int | None:
    """Records a read_committed reader still gets after the app group's committed offsets; None when it
    cannot reach the end (an open transaction holds the last stable offset back)."""
    conf = {"group.id": settings.app_id, "enable.auto.commit": False, "isolation.level": "read_committed"}
    consumer = Consumer(settings.confluent_config(**conf, log_level=3))
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        ends = {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        start = [tp for tp in consumer.committed(tps, timeout=10) if tp.offset < ends[tp.topic, tp.partition]]
        if not start:
            return 0
        consumer.assign([TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)) for tp in start])
        unread, deadline = 0, time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            unread += sum(1 for m in consumer.consume(1000, timeout=0.2) if m.error() is None)
            positions = consumer.position([TopicPartition(tp.topic, tp.partition) for tp in start])
            if all(tp.offset >= ends[tp.topic, tp.partition] for tp in positions):
                return unread
        return None
    finally:
        consumer.close()


# --- the audit -------------------------------------------------------------------------------------


@dataclass
class Audit:
    """What the pipeline did, recomputed from the topics."""

    events: int = 0
    actions: int = 0
    duplicates: int = 0  # actions beyond the first per event (redeliveries: same decision)
    lost: int = 0  # events without any action
    accounts: int = 0
    transitions: int = 0  # distinct decision ids joined (the learning topic)
    table_updates: int = 0  # sum of n over the decision table rows
    counters: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"events {self.events}, actions {self.actions}, duplicates {self.duplicates}, lost {self.lost}, "
            f"accounts {self.accounts}, transitions {self.transitions}, table updates {self.table_updates}"
        )


def audit(
    settings: Settings,
    event_ids: Collection[str],
    label_ids: Collection[str] | None = None,
    markers: bool = False,
) -> Audit:
    """Check the guarantees once the pipeline is drained; fails with the first broken one.

    - every event has an action, and all actions of one event carry the same decision_id and action;
    - each account's state equals a from-scratch fold of its events in partition/offset order
      (windows, Welford statistics, terminals, last applied offsets): nothing applied twice or lost;
    - every label (`label_ids`: their transactions) was joined with its decision: one transition;
    - the decision table counts each distinct joined transition exactly once.
    """
    wait_drained(settings, markers=markers)
    topics = settings.topics()
    result = Audit(events=len(event_ids), counters=counts(settings))
    decisions: dict[str, set[tuple[str, str]]] = defaultdict(set)
    per_event: Counter[str] = Counter()
    for rec in read_topic(settings, topics.actions):
        action = loads(rec.value)
        per_event[action["event_id"]] += 1
        decisions[action["event_id"]].add((action["decision_id"], action["action"]))
    result.actions = sum(per_event.values())
    missing = [e for e in event_ids if e not in per_event]
    result.lost = len(missing)
    result.duplicates = result.actions - len(per_event)
    assert not missing, (
        f"{len(missing)} events without an action, e.g. {missing[:5]} "
        f"(partition: offsets {_where(settings, topics.events, set(missing))}); {result.line()}"
    )
    split = {e: d for e, d in decisions.items() if len(d) > 1}
    assert not split, f"{len(split)} events with different decisions, e.g. {list(split.items())[:3]}"

    expected = recompute_states(read_topic(settings, topics.events))
    stored = latest_values(settings, f"{settings.app_id}-entities-changelog")
    result.accounts = len(expected)
    assert set(stored) == set(expected), f"accounts differ: {set(stored) ^ set(expected)}"
    wrong = [k for k, state in expected.items() if stored[k] != state]
    assert not wrong, (
        f"{len(wrong)} accounts differ from a recomputation; {state_differences(stored, expected, wrong)}"
    )

    transitions = [(r.partition, r.offset, loads(r.value)) for r in read_topic(settings, topics.learning)]
    learned = {t["decision_id"] for _, _, t in transitions}
    history = read_topic(settings, f"{settings.app_id}-decisions-changelog")
    rows = latest_values(settings, f"{settings.app_id}-decisions-changelog", history)
    result.transitions = len(learned)
    if label_ids is not None:
        unjoined = {decision_id_for(t) for t in label_ids} - learned
        assert not unjoined, f"{len(unjoined)} labels never became a transition; {result.line()}"
        assert len(learned) == len(set(label_ids)), f"transitions without a label: {result.line()}"
    result.table_updates = sum(sum(row["n"]) for row in rows.values())
    assert result.table_updates == result.transitions, (
        f"decision table vs transitions: {result.line()}; {row_differences(rows, transitions)}; "
        f"{row_regressions(history)}; repeats the learner recognised: "
        f"{result.counters.get('learning_duplicates', 0)}"
    )
    return result


def row_differences(rows: dict[bytes, Any], transitions: list[tuple[int, int, dict]]) -> str:
    """Which decision-table rows hold fewer or more updates than their distinct transitions, with
    the learning partitions and offsets those came from and what the row says it applied."""
    by_row: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    for partition, offset, t in transitions:
        by_row[t["state_key"]].setdefault(t["decision_id"], (partition, offset))
    lines = []
    for state_key, seen in by_row.items():
        row = rows.get(state_key.encode(), {})
        stored = sum(row.get("n", []))
        if stored != len(seen):
            spots = sorted(seen.values())
            remembered = set(row.get("r", []))  # the row's last 256 applied decision ids
            oldest = min((seen[d] for d in remembered if d in seen), default=spots[-1])
            unapplied = sorted(spot for d, spot in seen.items() if spot >= oldest and d not in remembered)
            lines.append(
                f"{state_key}: {stored} updates for {len(seen)} transitions (learning partition, offset: "
                f"first {spots[:2]}, last {spots[-2:]}; not among the row's recent ids: {unapplied[:4]}); "
                f"row applied {row.get('a')}"
            )
    return f"{len(lines)} rows differ: " + " | ".join(lines[:5])


def row_regressions(history: list[Rec]) -> str:
    """Decision-table writes that did not build on the row's previous write (version not above it):
    a learner that started from a stale copy of the row and overwrote an update."""
    last: dict[bytes, tuple[int, dict]] = {}
    found = []
    for rec in history:
        if rec.key is None or rec.value is None:
            continue
        row = loads(rec.value)
        before = last.get(rec.key)
        if before is not None and row.get("v", 0) <= before[1].get("v", 0):
            found.append(
                f"{rec.key.decode()}@{rec.partition}:{rec.offset} v{row.get('v')} a{row.get('a')} "
                f"after @{before[0]} v{before[1].get('v')} a{before[1].get('a')}"
            )
        last[rec.key] = (rec.offset, row)
    return f"{len(found)} writes not above the previous version: " + " | ".join(found[:6])


def state_differences(stored: dict[bytes, Any], expected: dict[bytes, Any], wrong: list[bytes]) -> str:
    """What differs, compactly: how many events each wrong account holds versus the recomputation
    (n: a lost or doubled update shows as a count difference), and the fields of the first ones."""
    gaps = Counter(stored[k]["n"] - expected[k]["n"] for k in wrong)
    lines = [f"stored minus recomputed event counts: {dict(sorted(gaps.items()))}"]
    for key in wrong[:3]:
        fields = {
            f: (stored[key][f], expected[key][f]) for f in expected[key] if stored[key][f] != expected[key][f]
        }
        lines.append(f"{key!r} (stored, recomputed): {fields}")
    return "\n".join(lines)


def recompute_states(events: list[Rec]) -> dict[bytes, dict[str, Any]]:
    """Each account's state from scratch: RiskScenario.update folded over its valid events in
    partition/offset order, skipping a transaction id seen before (the worker's duplicate rule)."""
    scenario = RiskScenario()
    states: dict[bytes, Any] = {}
    seen: set[str] = set()
    for rec in events:
        try:
            tx = scenario.parse(rec.value)
        except InvalidEvent:
            continue
        key = scenario.key(tx).encode()
        if rec.key != key or tx.transaction_id in seen:
            continue
        seen.add(tx.transaction_id)
        state = states.get(key) or scenario.initial_state()
        states[key] = scenario.update(state, tx)
        state.last_offsets[str(rec.partition)] = rec.offset
    return {k: scenario.state_to_dict(s) for k, s in states.items()}


def owners(settings: Settings) -> list[set[int]]:
    """The events partitions each member of the app's consumer group holds (empty while rebalancing)."""
    from connectors.admin import admin_client

    admin = admin_client(settings)
    group = admin.describe_consumer_groups([settings.app_id])[settings.app_id].result(timeout=10)
    events = settings.topics().events
    return [
        {tp.partition for tp in m.assignment.topic_partitions if tp.topic == events} for m in group.members
    ]
