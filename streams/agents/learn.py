"""The learn agent: the one writer of the decision-table rows whose state keys it owns.

Rows it wrote are kept in `own` until its partitions are revoked: the GlobalTable's local view can
briefly lag behind this worker's own writes (its changelog is consumed asynchronously), and a
learner reading a stale row would lose an update.

A transition is applied at most once, exactly: each row remembers the last applied offset per
learning partition (a replay of the learning topic), and the `learned` table holds every decision
id applied, with where (learning partition, offset, row). Upstream crashes re-send transitions (a
batch whose transitions went out but whose table changes did not is handled again), in any order
and long after a hot row's recent ids have moved on. A mark is written before its row (an earlier
send wave), so a mark whose row update never reached the changelog is recognised: its row's
applied offset is below it, and the transition is applied then. Marks older than
`learned_ttl_s` are forgotten (marks.py).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
from faust.types import EventT

from streams.agents.batch import BatchAgent, register_batch_agent
from streams.agents.marks import MarkClock, MarkSweep
from streams.agents.outbox import Outbox
from streams.agents.views import RowCache
from streams.core.learning import apply, next_max_of
from streams.core.scenario import InvalidEvent, Transition
from streams.core.table import Row

if TYPE_CHECKING:
    from streams.app import Pipeline


class Learner(BatchAgent):
    writes_entity_tables = False

    def __init__(self, p: Pipeline) -> None:
        super().__init__(p)
        self.table_rows = RowCache(p.decisions)
        self.own: dict[str, Row] = {}
        self.changed: dict[str, tuple[Row, EventT]] = {}
        self.clock = MarkClock(p.settings.learned_ttl_s)
        self.sweep = MarkSweep(self.clock)

    def forget(self) -> None:
        self.own.clear()
        self.sweep.cursors.clear()

    def current_row(self, state_key: str) -> Row | None:
        """A row as it stands, read only (it may be another learner's): ours if we wrote it."""
        return self.own.get(state_key) or self.table_rows.get(state_key)

    def row(self, state_key: str) -> Row:
        row = self.own.get(state_key)
        if row is None:
            cached = self.table_rows.get(state_key)
            row = Row.from_dict(cached.to_dict()) if cached else Row.empty(len(self.p.scenario.actions))
            self.own[state_key] = row
        return row

    def handle(self, event: EventT, out: Outbox) -> None:
        p, settings = self.p, self.p.settings
        msg = event.message
        try:
            transition = Transition.from_dict(orjson.loads(msg.value))
            index = p.scenario.actions.index(transition.action)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidEvent(f"invalid transition: {exc}") from None
        row = self.row(transition.state_key)
        next_max = 0.0
        if settings.discount > 0 and transition.next_state_key:
            next_key = transition.next_state_key
            next_max = next_max_of(self.current_row(next_key))
        source = f"{msg.topic}:{msg.partition}"
        key = transition.decision_id.encode()
        if self.applied_before(p.learned_ids.get(key, event)):
            p.metrics.inc("learning_duplicates")
            return
        applied = apply(
            row, transition, index, alpha=settings.learning_rate, gamma=settings.discount,
            next_max=next_max, source=source, offset=msg.offset, by_origin=False,
        )  # fmt: skip
        p.metrics.inc("learning_updates" if applied else "learning_duplicates")
        if applied:
            self.clock.observe(transition.event_ts)
            mark = self.clock.mark(source, msg.offset, transition.state_key, time.time())
            p.learned_ids.put(key, mark, event)
            self.changed[transition.state_key] = (row, event)

    def applied_before(self, mark: list[Any] | None) -> bool:
        """Whether a decision's mark stands for an update its row holds (the row's applied offset for
        that learning partition reached the mark's)."""
        if mark is None:
            return False
        source, offset, state_key = mark[:3]
        row = self.current_row(state_key)
        applied = None if row is None else row.applied.get(source)
        return applied is not None and applied >= offset

    def finish(self, out: Outbox) -> None:
        """One decision-table write per changed row per batch, and the batch's marks."""
        p = self.p
        for key, (row, event) in self.changed.items():
            out.write(p.decisions, key.encode(), orjson.dumps(row.to_dict()), event)
        self.changed.clear()
        written = dict(p.learned_ids.dirty)  # the batch's marks: decision id -> its record
        p.learned_ids.write_through(out)
        self.forget_expired(out, written)

    def forget_expired(self, out: Outbox, written: dict[bytes, EventT]) -> None:
        """Delete the expired marks of the partitions this batch marked in: in each, twice as many
        looked at as it marked there, plus a few (none it `written` again)."""
        p, store, now = self.p, self.p.learned.data, time.time()
        if not hasattr(store, "_dbs"):  # RocksDB only (the learned table always is)
            return
        marked: dict[int, list[EventT]] = {}
        for event in written.values():
            marked.setdefault(event.message.partition, []).append(event)
        for partition, events in marked.items():
            db = store._db_for_partition(partition)
            swept = self.sweep.sweep(db, partition, 2 * len(events) + 16, now)
            expired = [key for key in swept if key not in written]
            for key in expired:
                out.write(p.learned, key, None, events[0])
                p.learned_ids.forget(key)
            if expired:
                p.metrics.inc("learned_forgotten", len(expired))


def register_learn(p: Pipeline) -> None:
    learner = Learner(p)
    register_batch_agent(p, p.learning, f"{p.names.learning}.learn", learner)

    @p.app.on_partitions_revoked.connect
    async def on_revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
        learner.forget()
