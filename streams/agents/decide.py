"""The decide agent: perceive -> decide -> act for a batch of events, in one agent per partition set.

Idempotence: each entity's state remembers the last input offset applied per partition. A record
at or below it is a re-delivery (crash before the commit): its state change is not applied again
and the decision stored in the pending table is emitted again unchanged (same decision_id).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from faust.types import EventT

from streams.agents.join import emit_transition
from streams.agents.outbox import Outbox, bind, write_table
from streams.agents.views import RowCache
from streams.codecs import dumps, loads
from streams.core.pending import PendingDecisions
from streams.core.scenario import Decision, Draw, InvalidEvent

if TYPE_CHECKING:
    from streams.app import Pipeline


class Decider:
    """Batch logic of the decide agent, kept apart from the Faust loop so it reads top to bottom."""

    def __init__(self, p: Pipeline) -> None:
        self.p = p
        self.rows = RowCache(p.decisions)
        self.watermarks: dict[int, float] = {}

    def run(self, events: list[EventT]) -> Outbox:
        p, scenario, metrics = self.p, self.p.scenario, self.p.metrics
        out = Outbox()
        now = time.time()
        states: dict[bytes, tuple[Any, EventT]] = {}
        pendings: dict[bytes, tuple[PendingDecisions, EventT]] = {}
        for event in events:
            msg = event.message
            try:
                item = scenario.parse(msg.value)
            except InvalidEvent as exc:
                out.dead_letter(p.dlq, event, exc.reason, metrics)
                continue
            key = scenario.key(item).encode()
            bind(event)
            state = states[key][0] if key in states else self._load_state(key)
            pending = pendings[key][0] if key in pendings else PendingDecisions.from_bytes(p.pending.get(key))
            offsets: dict[str, int] = state.last_offsets
            part = str(msg.partition)
            decision_id = scenario.decision_id(item)
            if msg.offset <= offsets.get(part, -1):
                self._redeliver(out, pending, decision_id, key, event)
                continue
            decision = self._decide(item, state, decision_id)
            state = scenario.update(state, item)
            offsets[part] = msg.offset
            action = decision.to_dict()
            early = pending.take_early(decision_id)
            if early is None:
                pending.add(action)
            else:  # its outcome came first: join now
                emit_transition(p, out, action, scenario.parse_outcome(early.encode()), event)
                metrics.inc("feedback_joined")
            ts = scenario.event_ts(item)
            if ts > self.watermarks.get(msg.partition, 0.0):
                self.watermarks[msg.partition] = ts
            self._expire(out, pending, self.watermarks[msg.partition], event, now)
            states[key] = (state, event)
            pendings[key] = (pending, event)
            out.add(p.actions, key, dumps({**action, "ingest_ts": msg.timestamp}), event)
            metrics.inc("decisions")
        write_table(p.entities, {k: (dumps(scenario.state_to_dict(s)), e) for k, (s, e) in states.items()})
        write_table(p.pending, {k: (pd.to_bytes(), e) for k, (pd, e) in pendings.items()})
        return out

    def _load_state(self, key: bytes) -> Any:
        raw = self.p.entities.get(key)
        scenario = self.p.scenario
        return scenario.initial_state() if raw is None else scenario.state_from_dict(loads(raw))

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
        """Emit the stored decision again: the action may not have reached Kafka before a crash."""
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
    decider = Decider(p)
    settings = p.settings

    @p.app.agent(p.events, name=f"{p.names.events}.decide")
    async def decide(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, settings.batch_within_s):
            await decider.run(events).flush()
