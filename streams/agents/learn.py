"""The learn agent: the one writer of the decision-table rows whose state keys it owns.

Rows it wrote are kept in `own` until its partitions are revoked: the GlobalTable's local view can
briefly lag behind this worker's own writes (its changelog is consumed asynchronously), and a
learner reading a stale row would lose an update. Each row remembers the last applied offset per
learning partition and the recent decision ids, so a re-delivered transition is not applied twice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson
from faust.types import EventT

from streams.agents.batch import BatchAgent, register_batch_agent
from streams.agents.outbox import Outbox
from streams.agents.views import RowCache
from streams.core.learning import apply, next_max_of
from streams.core.scenario import InvalidEvent, Transition
from streams.core.table import Row

if TYPE_CHECKING:
    from streams.app import Pipeline

log = logging.getLogger(__name__)


class Learner(BatchAgent):
    writes_entity_tables = False

    def __init__(self, p: Pipeline) -> None:
        super().__init__(p)
        self.table_rows = RowCache(p.decisions)
        self.own: dict[str, Row] = {}
        self.changed: dict[str, tuple[Row, EventT]] = {}

    def forget(self) -> None:
        self.own.clear()

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
            next_max = next_max_of(self.own.get(next_key) or self.table_rows.get(next_key))
        source = f"{msg.topic}:{msg.partition}"
        applied = apply(
            row, transition, index, alpha=settings.learning_rate, gamma=settings.discount,
            next_max=next_max, source=source, offset=msg.offset,
        )  # fmt: skip
        p.metrics.inc("learning_updates" if applied else "learning_duplicates")
        if not applied and not row.seen(transition.decision_id):
            # Skipped by a high-water mark (offset or origin), not by its id: a repeat whose id the
            # row no longer remembers, or a record handled out of its partition's order.
            p.metrics.inc("learning_skipped_unseen")
            log.info(
                "transition %s (%s@%d, origin %s@%s) skipped: row %s has applied %s, origins %s",
                transition.decision_id, source, msg.offset, transition.origin, transition.origin_offset,
                transition.state_key, row.applied.get(source), row.origins.get(transition.origin or ""),
            )  # fmt: skip
        if applied:
            self.changed[transition.state_key] = (row, event)

    def finish(self, out: Outbox) -> None:
        """One decision-table write per changed row per batch."""
        for key, (row, event) in self.changed.items():
            out.write(self.p.decisions, key.encode(), orjson.dumps(row.to_dict()), event)
        self.changed.clear()


def register_learn(p: Pipeline) -> None:
    learner = Learner(p)
    register_batch_agent(p, p.learning, f"{p.names.learning}.learn", learner)

    @p.app.on_partitions_revoked.connect
    async def on_revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
        learner.forget()
