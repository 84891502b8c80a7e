"""The faust.App factory: topics, tables and agents of one scenario.

Tables (all keyed and valued by raw bytes we encode ourselves with orjson):
- `entities`  RocksDB, per-entity features, co-partitioned with the events topic.
- `pending`   RocksDB, per-entity decisions waiting for their feedback (expire after a TTL).
- `decisions` GlobalTable in memory: the decision table, a few hundred rows that every worker's
              decide agent reads per event; one writer per row (the learn agent owning its key).
- `outcome_stats` GlobalTable in memory: scenario side statistics learned from outcomes (for risk,
              fraud counts per terminal), keyed "<key>|<partition>" so each partition has one writer.
- `learned`   RocksDB, co-partitioned with the learning topic: every decision id the learner applied,
              and where (learning partition, offset, row), so a repeat of it is never applied again;
              forgotten after `learned_ttl_s` (agents/marks.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import Message

from streams.agents import fastlane
from streams.agents.cache import TableCache, register_invalidation
from streams.agents.outbox import Outbox, changelog_name
from streams.agents.transactions import commit_batch
from streams.agents.views import PartitionSum
from streams.codecs import DLQ_MAX_RECORD, dumps, loads
from streams.core.pending import PendingDecisions
from streams.core.policies import Policy, make_policy
from streams.core.scenario import Scenario
from streams.metrics import Metrics
from streams.scenarios import build_scenario
from streams.settings import Settings, Topics

RAW = {"key_serializer": "raw", "value_serializer": "raw"}  # topics
BYTES = {"key_type": bytes, "value_type": bytes}  # tables: Faust picks the raw codec for bytes


# Faust opens one RocksDB per table partition with 3 x 64 MB memtables and a 2 GB block cache each:
# 8 databases grew a worker's RSS by ~900 MB in a 10-minute soak. Our hot state lives in the decoded
# write-back cache (cache.py), so RocksDB needs little memory of its own: reads only miss that cache.
# 12 databases (3 tables x 4 partitions) hold at most 12 x (2 x 4 + 4) = 144 MB; with 2 x 8 + 16 MB
# each they had 384 MB to fill, which the slowest-written (`learned`) took most of a soak to reach.
def rocksdb_options() -> dict[str, Any]:
    """A fresh dict per table: Faust's store pops keys from the one it is given."""
    return {"write_buffer_size": 4 << 20, "max_write_buffer_number": 2, "block_cache_size": 4 << 20}


# "memory://" parses to a yarl URL that is falsy, and Faust then silently falls back to the app's
# default store (RocksDB); a URL with a host is truthy and selects the memory store as intended.
MEMORY = "memory://local/"
# A GlobalTable applies its changelog in batches of `recovery_buffer_size` records (default 1000) on
# the workers that do not write it: a learned row could wait there indefinitely. Apply each record.
GLOBAL = {"store": MEMORY, "recovery_buffer_size": 1, **BYTES}


@dataclass
class Pipeline:
    """Everything a worker runs for one scenario; the agents read their collaborators from here."""

    settings: Settings
    app: faust.App
    names: Topics
    scenario: Scenario
    policy: Policy
    events: faust.TopicT
    feedback: faust.TopicT
    actions: faust.TopicT
    learning: faust.TopicT
    dlq: faust.TopicT
    entities: faust.Table
    pending: faust.Table
    decisions: faust.GlobalTable
    outcome_stats: faust.GlobalTable
    learned: faust.Table  # decision id -> where the learner applied it (see agents/learn.py)
    metrics: Metrics = field(default_factory=Metrics)
    lanes: dict[str, faust.ChannelT] = field(default_factory=dict)
    # Held by the agents that write the entity tables (decide, join: both write `pending`) from a
    # batch's table writes until its records are acknowledged: see `register_batch_agent`.
    entity_writes: asyncio.Lock = field(default_factory=asyncio.Lock)
    states: TableCache[Any] = field(init=False)
    pendings: TableCache[PendingDecisions] = field(init=False)
    learned_ids: TableCache[list[Any] | None] = field(init=False)
    first_topics: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        scenario = self.scenario

        def decode_optional(raw: bytes | None) -> Any:
            return None if raw is None else loads(raw)

        def decode_state(raw: bytes | None) -> Any:
            return scenario.initial_state() if raw is None else scenario.state_from_dict(loads(raw))

        self.states = TableCache(self.entities, decode_state, lambda st: dumps(scenario.state_to_dict(st)))
        self.pendings = TableCache(self.pending, PendingDecisions.from_bytes, PendingDecisions.to_bytes)
        # A mark is read once, when its transition comes (a miss: the id is new), and again only for
        # a repeat; kept for a batch, not until 200,000 entries: that cache was most of the worker's
        # Python heap in a soak (1.2M -> 2.5M allocated blocks, cleared and refilled every 2.5 min).
        marks_kept = 4 * self.settings.batch_size  # a merged batch's records (batch.py)
        self.learned_ids = TableCache(self.learned, decode_optional, dumps, max_entries=marks_kept)
        register_invalidation(self.app, self.states, self.pendings, self.learned_ids)
        # Sent first, before any table change: transitions (see Outbox.send) and the learner's marks
        # of applied decision ids (a mark without its row update is recognised as stale; a row
        # update without its mark would let a repeat of that decision be applied again).
        self.first_topics = frozenset({self.names.learning, changelog_name(self.learned)})

    @property
    def exactly_once(self) -> bool:
        return self.app.conf.processing_guarantee.value == "exactly_once"

    def outbox(self) -> Outbox:
        return Outbox(partitions=self.settings.partitions, first_topics=self.first_topics)

    async def emit(self, out: Outbox, sources: list[Message]) -> None:
        """Send the batch's records (its table changes included) and wait for their acks; exactly-once:
        commit them with the offsets after `sources` (transactions.py)."""
        if self.exactly_once:
            await commit_batch(self.app, out, sources)
        else:
            await out.flush(self.app.producer._producer)


def broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def create_app(settings: Settings) -> faust.App:
    if not settings.bootstrap_servers:
        raise ValueError("create_app needs bootstrap servers (start the embedded broker first)")
    (settings.data_dir / settings.app_id).mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.app_id,
        broker=broker_urls(settings.bootstrap_servers),
        broker_credentials=settings.faust_broker_credentials(),
        store="rocksdb://",
        datadir=str(settings.data_dir / settings.app_id),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        processing_guarantee=settings.processing_guarantee,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_linger=settings.producer_linger_ms / 1000.0,
        producer_compression_type=None
        if settings.worker_compression == "none"
        else settings.worker_compression,
        producer_acks=-1 if settings.producer_acks == "all" else int(settings.producer_acks),
        producer_max_batch_size=settings.producer_max_batch_bytes,
        producer_max_request_size=max(4 * settings.producer_max_batch_bytes, DLQ_MAX_RECORD),
        stream_buffer_maxsize=4 * settings.batch_size,
        broker_max_poll_records=settings.batch_size,  # one fetch is one agent batch: bounds its latency
        web_enabled=False,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        table_standby_replicas=0,
    )


def bound_fetch_wait(app: faust.App, fetch_max_wait_ms: int) -> None:
    """Faust makes its aiokafka consumer with fetch_max_wait_ms=1500 and no setting for it; this sets
    it on the consumer as it is made (before it starts its fetcher)."""
    thread: Any = app.consumer._thread  # type: ignore[attr-defined]
    make = thread._create_worker_consumer

    def _create_worker_consumer(transport: Any) -> Any:
        consumer = make(transport)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms
        return consumer

    thread._create_worker_consumer = _create_worker_consumer


def build_pipeline(settings: Settings) -> Pipeline:
    """Create the worker's app with its topics and tables, and register the agents on it."""
    app = create_app(settings)
    # Faust sets this in Worker.on_start, but the consumer (created below by fastlane.install) reads
    # `app.in_transaction` when it is made: without it exactly-once would start no transactions.
    app.in_worker = True
    names = settings.topics()
    outcome_stats = app.GlobalTable("outcome_stats", partitions=settings.partitions, **GLOBAL)
    scenario = build_scenario(settings, PartitionSum(outcome_stats, settings.partitions))
    policy = make_policy(
        settings.policy,
        scenario.actions,
        scenario.baseline,
        epsilon=settings.epsilon,
        temperature=settings.temperature,
    )

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, partitions=settings.partitions, **RAW)

    pipeline = Pipeline(
        settings=settings,
        app=app,
        names=names,
        scenario=scenario,
        policy=policy,
        events=topic(names.events),
        feedback=topic(names.feedback),
        actions=topic(names.actions),
        learning=topic(names.learning),
        dlq=topic(names.dlq),
        entities=app.Table("entities", partitions=settings.partitions, **BYTES, options=rocksdb_options()),
        pending=app.Table("pending", partitions=settings.partitions, **BYTES, options=rocksdb_options()),
        decisions=app.GlobalTable("decisions", partitions=settings.partitions, **GLOBAL),
        outcome_stats=outcome_stats,
        learned=app.Table("learned", partitions=settings.partitions, **BYTES, options=rocksdb_options()),
    )
    from streams.agents import register_agents

    register_agents(pipeline)
    fastlane.install(app, pipeline.lanes)
    bound_fetch_wait(app, settings.fetch_max_wait_ms)
    # Faust parks table changelog writes in a buffer of 100 by default and stalls every stream
    # while it is over that ("producer buffer full"); one batch writes up to a few per record.
    app.producer.buffer.max_messages = 4 * settings.batch_size
    return pipeline


def declare_topics(p: Pipeline) -> None:
    """Create the scenario's topics and the tables' compacted changelogs before the worker starts.

    Faust creates changelogs itself, but a group whose first assignment races with their creation
    was seen to hang ("Ignoring missing topic"); creating them first avoids that race.
    """
    from connectors.admin import ensure_topics, set_topic_config

    ensure_topics(p.settings, p.names.all())
    set_topic_config(p.settings, p.names.dlq, {"max.message.bytes": str(DLQ_MAX_RECORD)})  # see codecs
    changelogs = [
        t.changelog_topic.get_topic_name()
        for t in (p.entities, p.pending, p.decisions, p.outcome_stats, p.learned)
    ]
    ensure_topics(p.settings, changelogs, config={"cleanup.policy": "compact"})
