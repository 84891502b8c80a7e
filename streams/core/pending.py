"""Decisions waiting for their outcome, and outcomes waiting for their decision, per entity.

Feedback arrives late, out of order, duplicated or never, and when the decide agent lags behind the
feedback stream an outcome can even arrive before its decision. An entity's pending decisions live
in one record so the join finds a decision where it was made (same key, same partition), an early
outcome waits (`early`) until its decision is made, a duplicate label is told apart from an unknown
one, and decisions past their time-to-live are expired on touch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

RECENT_JOINED = 64
# A joined decision is remembered by the first JOINED_ID_CHARS characters of its id (hex digits of
# a hash: 48 bits), all of an entity's in one string. The record is written back with every change
# of the entity, and a list of full ids was 58% of a pending value (1.24 of 2.1 KB, measured in a
# soak; the pending changelog carried 12x the bytes of the events topic), and 64 str objects per
# cached entity. Two of an entity's ids share a prefix with probability 64 / 2**48 per lookup.
JOINED_ID_CHARS = 12
MAX_EARLY = 256


class JoinStatus(Enum):
    JOINED = "joined"
    DUPLICATE = "duplicate"
    EARLY = "early"  # no decision yet: the outcome waits for it
    UNKNOWN = "unknown"  # early outcomes evicted or expired without their decision


@dataclass(slots=True)
class PendingDecisions:
    """Written back after every change, so encoding is kept cheap: each open decision is encoded
    once (`_encoded`) and reused, and expiry scans only when the oldest decision can be due."""

    open: dict[str, dict[str, Any]] = field(default_factory=dict)
    joined: str = ""  # id prefixes, fixed width, oldest first (`was_joined`)
    early: dict[str, tuple[str, float]] = field(default_factory=dict)  # decision id -> (outcome, wall ts)
    # Judged (joined or expired) decisions, kept until their action is surely in Kafka (see
    # `prune_done`): a crash can leave a decision in the changelog without its action, the label
    # can be joined before the event comes again, and the redelivery must then find the decision to
    # emit the same action. No count cap: a restart's feedback backlog joined 16+ decisions of one
    # account before its events were redelivered, and the evicted ones lost their actions.
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    _encoded: dict[str, orjson.Fragment] = field(default_factory=dict, repr=False, compare=False)
    _oldest: float = field(default=float("inf"), repr=False, compare=False)

    def add(self, decision: dict[str, Any]) -> None:
        decision_id = decision["decision_id"]
        self.open[decision_id] = decision
        self._encoded[decision_id] = orjson.Fragment(orjson.dumps(decision))
        self._oldest = min(self._oldest, decision["event_ts"])

    def stored(self, decision_id: str) -> dict[str, Any] | None:
        """The decision as made, while it waits for its outcome or was judged recently."""
        return self.open.get(decision_id) or self.done.get(decision_id)

    def keep(self, decision: dict[str, Any]) -> None:
        """Keep a judged decision for its event's possible redelivery, until `prune_done` passes it."""
        self.done[decision["decision_id"]] = decision

    def prune_done(self, before_offset: int) -> None:
        """Forget judged decisions of events before `before_offset`: the events partition's handled
        position (every event before it has its action acknowledged), e.g. the first offset of the
        batch being decided there. What stays is bounded by the events not yet handled."""
        self.done = {k: d for k, d in self.done.items() if d.get("offset", -1) >= before_offset}

    def join(self, decision_id: str, outcome: str, now: float) -> tuple[JoinStatus, dict[str, Any] | None]:
        """Match an outcome (its raw JSON text) with its decision, or park it until the decision."""
        decision = self.open.pop(decision_id, None)
        if decision is not None:
            self._encoded.pop(decision_id, None)
            self._remember(decision_id)
            self.keep(decision)
            return JoinStatus.JOINED, decision
        if self.was_joined(decision_id) or decision_id in self.early:
            return JoinStatus.DUPLICATE, None
        self.early[decision_id] = (outcome, now)
        return JoinStatus.EARLY, None

    def take_early(self, decision_id: str) -> str | None:
        """The outcome that arrived before this decision, if any (the decision is then joined)."""
        entry = self.early.pop(decision_id, None)
        if entry is None:
            return None
        self.open.pop(decision_id, None)
        self._encoded.pop(decision_id, None)
        self._remember(decision_id)
        return entry[0]

    def evict_early(self, now: float, ttl_s: float) -> int:
        """Drop early outcomes whose decision never came (its event was malformed or lost upstream):
        those older than `ttl_s` (wall clock), then the oldest beyond MAX_EARLY."""
        early = self.early
        if not early:
            return 0
        # Parked in arrival order, so the stale ones lead: the scan stops at the first fresh one (a
        # full scan on every event cost 4.5% of a worker when a feedback backlog parked hundreds).
        stale = 0
        for _, ts in early.values():
            if now - ts <= ttl_s:
                break
            stale += 1
        stale += max(0, len(early) - stale - MAX_EARLY)
        for decision_id in list(itertools.islice(early, stale)):
            del early[decision_id]
        return stale

    def expire(self, watermark: float, ttl_s: float) -> list[dict[str, Any]]:
        """Remove and return decisions older (in event time) than watermark - ttl."""
        cutoff = watermark - ttl_s
        if self._oldest >= cutoff:
            return []
        expired = [d for d in self.open.values() if d["event_ts"] < cutoff]
        for decision in expired:
            del self.open[decision["decision_id"]]
            self._encoded.pop(decision["decision_id"], None)
            self._remember(decision["decision_id"])
            self.keep(decision)
        self._oldest = min((d["event_ts"] for d in self.open.values()), default=float("inf"))
        return expired

    def was_joined(self, decision_id: str) -> bool:
        """Joined or expired recently (one of the last RECENT_JOINED of the entity)."""
        prefix, joined = _prefix(decision_id), self.joined
        at = joined.find(prefix)
        while at >= 0 and at % JOINED_ID_CHARS:  # a match across two prefixes
            at = joined.find(prefix, at + 1)
        return at >= 0

    def _remember(self, decision_id: str) -> None:
        self.joined = (self.joined + _prefix(decision_id))[-RECENT_JOINED * JOINED_ID_CHARS :]

    def __bool__(self) -> bool:
        return bool(self.open or self.joined or self.early or self.done)

    def to_bytes(self) -> bytes:
        encoded = self._encoded
        for decision_id, decision in self.open.items():  # decoded from bytes: encode once
            if decision_id not in encoded:
                encoded[decision_id] = orjson.Fragment(orjson.dumps(decision))
        return orjson.dumps({"o": encoded, "j": self.joined, "e": self.early, "d": self.done})

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> PendingDecisions:
        if not raw:
            return cls()
        data = orjson.loads(raw)
        early = {k: (v[0], v[1]) for k, v in data["e"].items()}
        oldest = min((d["event_ts"] for d in data["o"].values()), default=float("inf"))
        joined = data["j"]
        if isinstance(joined, list):  # written before prefixes: full ids
            joined = "".join(map(_prefix, joined[-RECENT_JOINED:]))
        return cls(open=data["o"], joined=joined, early=early, done=data.get("d") or {}, _oldest=oldest)


def _prefix(decision_id: str) -> str:
    return decision_id[:JOINED_ID_CHARS].ljust(JOINED_ID_CHARS, "_")  # short ids (tests): fixed width
