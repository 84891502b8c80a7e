"""The decide agent: perceive -> decide -> act for a batch of events, in one agent per partition set.

Idempotence: each entity's state remembers the last input offset applied per partition. A record
at or below it is a re-delivery (crash before the commit): its state change is not applied again
and the decision kept with the pending decisions is emitted again (same decision_id and action).
A later record with the id of a decision still pending or recently joined (a producer retry or an
upstream replay) is treated the same way: one event id, one decision, one state change.

A crash can cut a batch's output anywhere between topics. The outbox sends table changes before
actions (outbox.py), so an action never exists without its decision in the changelog; a redelivered
record whose decision is kept but whose state change is not gets the state change; one whose state
change is in but whose decision is not (so no action went out) is decided again.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from faust.types import EventT

from streams.agents import fastlane
from streams.agents.batch import BatchAgent, register_batch_agent
from streams.agents.join import emit_transition
from streams.agents.outbox import Outbox
from streams.agents.views import RowCache
from streams.codecs import dumps
from streams.core.pending import PendingDecisions
from streams.core.scenario import Decision, Draw, InvalidEvent

if TYPE_CHECKING:
    from streams.app import Pipeline

WRONG_KEY = "record key is not the event's entity id (events must be keyed by entity)"


class Decider(BatchAgent):
    """Per-record logic of the decide agent."""

    def __init__(self, p: Pipeline) -> None:
        super().__init__(p)
        self.rows = RowCache(p.decisions)
        self.watermarks: dict[int, float] = {}
        self.kept = getattr(p.scenario, "outcome_features", None)
        self.now = time.time()

    def run(self, events: list[EventT]) -> Outbox:
        self.now = time.time()
        self.batch = events
        self.first: dict[int, int] | None = None
        return super().run(events)

    def first_offset(self, partition: int) -> int:
        """The first offset of this batch in `partition`: everything before it was flushed or committed."""
        if self.first is None:
            self.first = {}
            for message in self.batch:
                self.first.setdefault(message.partition, message.offset)
        return self.first[partition]

    def handle(self, event: EventT, out: Outbox) -> None:
        p, scenario, metrics = self.p, self.p.scenario, self.p.metrics
        msg = event.message
        item = scenario.parse(msg.value)
        key = scenario.key(item).encode()
        if msg.key != key:  # its state would go to a partition that does not own the entity
            raise InvalidEvent(WRONG_KEY)
        state = p.states.get(key, event)
        pending = p.pendings.get(key, event)
        offsets: dict[str, int] = state.last_offsets
        part = str(msg.partition)
        decision_id = scenario.decision_id(item)
        applied = msg.offset <= offsets.get(part, -1)
        stored = pending.stored(decision_id)
        if stored is not None or pending.was_joined(decision_id):
            self._decided_before(out, state, pending, stored, item, key, event, applied)
            return
        decision = self._decide(item, state, decision_id)
        if applied:  # a crash kept its state change but lost its decision (no action went out)
            metrics.inc("redecided")
        else:
            state = scenario.update(state, item)
            offsets[part] = msg.offset
        action = decision.to_dict()
        kept = self.kept
        features = decision.features if kept is None else {k: decision.features[k] for k in kept}
        stored = {**action, "features": features, "offset": msg.offset}
        early = pending.take_early(decision_id)
        if early is None:
            pending.add(stored)
        else:  # its outcome came first: join now
            pending.keep(stored)
            emit_transition(p, out, action, scenario.parse_outcome(early.encode()), event)
            metrics.inc("feedback_joined")
        ts = decision.event_ts
        if ts > self.watermarks.get(msg.partition, 0.0):
            self.watermarks[msg.partition] = ts
        self._expire(out, pending, self.watermarks[msg.partition], event, self.now)
        if pending.done:
            pending.prune_done(self.first_offset(msg.partition))
        p.states.put(key, state, event)
        p.pendings.put(key, pending, event)
        action["ingest_ts"] = msg.timestamp
        out.add(p.actions, key, dumps(action), event)
        metrics.inc("decisions")

    def _decide(self, item: Any, state: Any, decision_id: str) -> Decision:
        p, scenario = self.p, self.p.scenario
        obs = scenario.observe(state, item)
        row = self.rows.get(obs.state_key)
        index, prob = p.policy.choose(row, obs, Draw(decision_id))
        return Decision(
            decision_id=decision_id,
            entity=scenario.key(item),
            action=scenario.actions[index],
            prob=prob,
            policy=p.policy.name,
            policy_version=row.version if row is not None else 0,
            state_key=obs.state_key,
            event_ts=scenario.event_ts(item),
            decision_ts=time.time(),
            event_id=scenario.event_id(item),
            features=obs.features,
        )

    def _decided_before(
        self,
        out: Outbox,
        state: Any,
        pending: PendingDecisions,
        stored: dict[str, Any] | None,
        item: Any,
        key: bytes,
        event: EventT,
        applied: bool,
    ) -> None:
        """Emit the kept decision again (same decision_id and action): for the same record, a
        redelivery whose action may not have reached Kafka (and whose state change is applied now if
        the changelog lost it); for another record, a duplicate id: no second state change."""
        p, msg = self.p, event.message
        same = stored is not None and stored.get("offset") == msg.offset
        if same and not applied:
            state = p.scenario.update(state, item)
            state.last_offsets[str(msg.partition)] = msg.offset
        if same or applied:
            started, own = fastlane.progress(p.app).origin(msg.tp)
            p.metrics.redelivered(msg.partition, msg.offset, started, own)
        else:
            p.metrics.inc("duplicate_events")
        if stored is not None:
            action = {k: v for k, v in stored.items() if k != "offset"}
            out.add(p.actions, key, dumps({**action, "ingest_ts": msg.timestamp}), event)
        p.states.put(key, state, event)  # written again: the changelog may have missed them
        p.pendings.put(key, pending, event)

    def _expire(
        self, out: Outbox, pending: PendingDecisions, watermark: float, event: EventT, now: float
    ) -> None:
        """Decisions whose feedback is overdue become transitions by the scenario's no-feedback rule;
        parked outcomes whose decision never came are dropped and counted."""
        p, scenario = self.p, self.p.scenario
        dropped = pending.evict_early(now, p.settings.early_outcome_ttl_s)
        if dropped:
            p.metrics.inc("feedback_unknown", dropped)
        rule = getattr(scenario, "no_feedback_outcome", None)
        for stored in pending.expire(watermark, p.settings.pending_ttl_s):
            p.metrics.inc("expired")
            if rule is not None:
                emit_transition(p, out, stored, rule(Decision.from_dict(stored)), event, origin=False)


def register_decide(p: Pipeline) -> None:
    register_batch_agent(p, p.events, f"{p.names.events}.decide", Decider(p))
