"""The join agent: an outcome meets the decision it judges; the transition goes to the learner.

Feedback is keyed by entity like the events, so its partition holds that entity's pending
decisions: the join is a local table lookup, never a network hop. The transition is re-keyed by
state key, so exactly one learner owns each decision-table row. An outcome that arrives before its
decision (the decide agent lags) is parked with the entity and joined by the decide agent.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from faust.types import TP, EventT

from streams.agents import fastlane
from streams.agents.batch import BatchAgent, register_batch_agent
from streams.agents.outbox import Outbox
from streams.agents.views import PartitionSlice
from streams.codecs import dumps
from streams.core.pending import JoinStatus
from streams.core.scenario import Decision, InvalidEvent, judge

if TYPE_CHECKING:
    from streams.app import Pipeline

NO_KEY = "feedback record without a key (expected the entity id)"


def emit_transition(
    p: Pipeline, out: Outbox, stored: dict[str, Any], outcome: Any, event: EventT, origin: bool = True
) -> None:
    """Judge a stored decision by its outcome; send the transition to the state key's learner.

    `origin`: the transition names the record being handled, which judges one decision at most
    (not so an expiry, which can judge several: those are told apart by decision id only)."""
    record_outcome = getattr(p.scenario, "record_outcome", None)
    if record_outcome is not None:
        record_outcome(PartitionSlice(p.outcome_stats, event, out), outcome)
    transition = judge(p.scenario, Decision.from_dict(stored), outcome)
    if origin:
        msg = event.message
        transition.origin, transition.origin_offset = f"{msg.topic}:{msg.partition}", msg.offset
    out.add(p.learning, transition.state_key.encode(), dumps(transition.to_dict()), event)


class Joiner(BatchAgent):
    def run(self, events: list[EventT]) -> Outbox:
        self.now = time.time()
        self.decided: dict[int, int | None] = {}
        return super().run(events)

    def decided_before(self, partition: int) -> int | None:
        """The events partition's handled position: every event before it has its action in Kafka,
        so judged decisions before it need not be kept for a redelivery (None: not known yet)."""
        if partition not in self.decided:
            app = self.p.app
            events = TP(self.p.names.events, partition)
            self.decided[partition] = fastlane.progress(app).position(app.consumer_generation_id, events)
        return self.decided[partition]

    def handle(self, event: EventT, out: Outbox) -> None:
        p, scenario = self.p, self.p.scenario
        msg = event.message
        outcome = scenario.parse_outcome(msg.value)
        key = msg.key
        if not key:
            raise InvalidEvent(NO_KEY)
        pending = p.pendings.get(key, event)
        p.pendings.put(key, pending, event)
        status, stored = pending.join(scenario.outcome_decision_id(outcome), msg.value.decode(), self.now)
        p.metrics.inc(f"feedback_{status.value}")
        if status is JoinStatus.JOINED and stored is not None:
            emit_transition(p, out, stored, outcome, event)
            position = self.decided_before(msg.partition)
            if position is not None:
                pending.prune_done(position)


def register_join(p: Pipeline) -> None:
    register_batch_agent(p, p.feedback, f"{p.names.feedback}.join", Joiner(p))
