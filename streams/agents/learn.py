"""The learn agent: the one writer of the decision-table rows whose state keys it owns.

Rows it wrote are kept in `own` until its partitions are revoked: the GlobalTable's local view can
briefly lag behind this worker's own writes (its changelog is consumed asynchronously), and a
learner reading a stale row would lose an update. Each row remembers the last applied offset per
learning partition and the recent decision ids, so a re-delivered transition is not applied twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from faust.types import EventT

from streams.agents.outbox import Outbox, write_table
from streams.agents.views import RowCache
from streams.core.learning import apply, next_max_of
from streams.core.scenario import Transition
from streams.core.table import Row

if TYPE_CHECKING:
    from streams.app import Pipeline


class Learner:
    def __init__(self, p: Pipeline) -> None:
        self.p = p
        self.table_rows = RowCache(p.decisions)
        self.own: dict[str, Row] = {}

    def forget(self) -> None:
        self.own.clear()

    def row(self, state_key: str) -> Row:
        row = self.own.get(state_key)
        if row is None:
            cached = self.table_rows.get(state_key)
            row = Row.from_dict(cached.to_dict()) if cached else Row.empty(len(self.p.scenario.actions))
            self.own[state_key] = row
        return row

    def run(self, events: list[EventT]) -> Outbox:
        p, settings, metrics = self.p, self.p.settings, self.p.metrics
        actions = p.scenario.actions
        out = Outbox()
        changed: dict[bytes, tuple[bytes, EventT]] = {}
        rows: dict[str, tuple[Row, EventT]] = {}
        for event in events:
            msg = event.message
            try:
                transition = Transition.from_dict(orjson.loads(msg.value))
                index = actions.index(transition.action)
            except (ValueError, KeyError, TypeError) as exc:
                out.dead_letter(p.dlq, event, f"invalid transition: {exc}", metrics)
                continue
            row = self.row(transition.state_key)
            next_max = 0.0
            if settings.discount > 0 and transition.next_state_key:
                next_max = next_max_of(
                    self.own.get(transition.next_state_key) or self.table_rows.get(transition.next_state_key)
                )
            applied = apply(
                row, transition, index, alpha=settings.learning_rate, gamma=settings.discount,
                next_max=next_max, source=f"{msg.topic}:{msg.partition}", offset=msg.offset,
            )  # fmt: skip
            metrics.inc("learning_updates" if applied else "learning_duplicates")
            if applied:
                rows[transition.state_key] = (row, event)
        for state_key, (row, event) in rows.items():
            changed[state_key.encode()] = (orjson.dumps(row.to_dict()), event)
        write_table(p.decisions, changed)
        return out


def register_learn(p: Pipeline) -> None:
    learner = Learner(p)
    settings = p.settings

    @p.app.agent(p.learning, name=f"{p.names.learning}.learn")
    async def learn(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, settings.batch_within_s):
            await learner.run(events).flush()

    @p.app.on_partitions_revoked.connect
    async def on_revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
        learner.forget()
