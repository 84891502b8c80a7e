"""The decide agent: perceive -> decide -> act for a batch of events, in one agent per partition set.

Idempotence: each entity's state remembers the last input offset applied per partition. A record
at or below it is a re-delivery (crash before the commit): its state change is not applied again
and the decision kept with the pending decisions is emitted again (same decision_id and action).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from faust.types import EventT

from streams.agents.batch import BatchAgent, register_batch_agent
from streams.agents.join import emit_transition
from streams.agents.outbox import Outbox
from streams.agents.views import RowCache
from streams.codecs import dumps
from streams.core.pending import PendingDecisions
from streams.core.scenario import Decision, Draw

if TYPE_CHECKING:
    from streams.app import Pipeline


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
        return super().run(events)

    def handle(self, event: EventT, out: Outbox) -> None:
        p, scenario, metrics = self.p, self.p.scenario, self.p.metrics
        msg = event.message
        item = scenario.parse(msg.value)
        key = scenario.key(item).encode()
        state = p.states.get(key, event)
        pending = p.pendings.get(key, event)
        offsets: dict[str, int] = state.last_offsets
        part = str(msg.partition)
        decision_id = scenario.decision_id(item)
        if msg.offset <= offsets.get(part, -1):
            self._redeliver(out, pending, decision_id, key, event)
            return
        decision = self._decide(item, state, decision_id)
        state = scenario.update(state, item)
        offsets[part] = msg.offset
        action = decision.to_dict()
        early = pending.take_early(decision_id)
        if early is None:
            kept = self.kept
            features = decision.features if kept is None else {k: decision.features[k] for k in kept}
            pending.add({**action, "features": features})
        else:  # its outcome came first: join now
            emit_transition(p, out, action, scenario.parse_outcome(early.encode()), event)
            metrics.inc("feedback_joined")
        ts = decision.event_ts
        if ts > self.watermarks.get(msg.partition, 0.0):
            self.watermarks[msg.partition] = ts
        self._expire(out, pending, self.watermarks[msg.partition], event, self.now)
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

    def _redeliver(
        self, out: Outbox, pending: PendingDecisions, decision_id: str, key: bytes, event: EventT
    ) -> None:
        """Emit the kept decision again: the action may not have reached Kafka before a crash."""
        self.p.metrics.inc("redelivered")
        stored = pending.open.get(decision_id)
        if stored is not None:
            out.add(self.p.actions, key, dumps({**stored, "ingest_ts": event.message.timestamp}), event)

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
                emit_transition(p, out, stored, rule(Decision.from_dict(stored)), event)


def register_decide(p: Pipeline) -> None:
    register_batch_agent(p, p.events, f"{p.names.events}.decide", Decider(p))
