"""The join agent: an outcome meets the decision it judges; the transition goes to the learner.

Feedback is keyed by entity like the events, so its partition holds that entity's pending
decisions: the join is a local table lookup, never a network hop. The transition is re-keyed by
state key, so exactly one learner owns each decision-table row. An outcome that arrives before its
decision (the decide agent lags) is parked with the entity and joined by the decide agent.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from faust.types import EventT

from streams.agents.outbox import Outbox, bind, write_table
from streams.agents.views import PartitionSlice
from streams.codecs import dumps
from streams.core.pending import JoinStatus, PendingDecisions
from streams.core.scenario import Decision, InvalidEvent, judge

if TYPE_CHECKING:
    from streams.app import Pipeline

NO_KEY = "feedback record without a key (expected the entity id)"


def emit_transition(p: Pipeline, out: Outbox, stored: dict[str, Any], outcome: Any, event: EventT) -> None:
    """Judge a stored decision by its outcome; send the transition to the state key's learner."""
    record_outcome = getattr(p.scenario, "record_outcome", None)
    if record_outcome is not None:
        record_outcome(PartitionSlice(p.outcome_stats, event.message.partition), outcome)
    transition = judge(p.scenario, Decision.from_dict(stored), outcome)
    out.add(p.learning, transition.state_key.encode(), dumps(transition.to_dict()), event)


class Joiner:
    def __init__(self, p: Pipeline) -> None:
        self.p = p

    def run(self, events: list[EventT]) -> Outbox:
        p, scenario, metrics = self.p, self.p.scenario, self.p.metrics
        out = Outbox()
        pendings: dict[bytes, tuple[PendingDecisions, EventT]] = {}
        now = time.time()
        for event in events:
            msg = event.message
            try:
                outcome = scenario.parse_outcome(msg.value)
            except InvalidEvent as exc:
                out.dead_letter(p.dlq, event, exc.reason, metrics)
                continue
            key = msg.key
            if not key:
                out.dead_letter(p.dlq, event, NO_KEY, metrics)
                continue
            bind(event)
            pending = pendings[key][0] if key in pendings else PendingDecisions.from_bytes(p.pending.get(key))
            pendings[key] = (pending, event)
            status, stored = pending.join(scenario.outcome_decision_id(outcome), msg.value.decode(), now)
            metrics.inc(f"feedback_{status.value}")
            if status is JoinStatus.JOINED and stored is not None:
                emit_transition(p, out, stored, outcome, event)
        write_table(p.pending, {k: (pd.to_bytes(), e) for k, (pd, e) in pendings.items()})
        return out


def register_join(p: Pipeline) -> None:
    joiner = Joiner(p)
    settings = p.settings

    @p.app.agent(p.feedback, name=f"{p.names.feedback}.join")
    async def join(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, settings.batch_within_s):
            await joiner.run(events).flush()
