"""The contract between a scenario and everything that runs it (agents, replay, tests).

Pure Python: no Faust, no Kafka. A scenario turns raw bytes into events, keeps per-entity state,
discretises it into a decision-table key, and scores outcomes. Policies and learning rules
(`policies.py`, `learning.py`) work on any scenario through this contract.
"""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


class InvalidEvent(ValueError):
    """Raised by a parser for input that must go to the dead-letter topic; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Observation:
    """What the decision sees: the discretised table key plus the raw features behind it."""

    state_key: str
    features: dict[str, float]


@dataclass(slots=True)
class Decision:
    """An action chosen for one event. `prob` is the policy's propensity (for off-policy evaluation)."""

    decision_id: str
    entity: str
    action: str
    prob: float
    policy: str
    policy_version: int
    state_key: str
    event_ts: float
    decision_ts: float
    event_id: str
    features: dict[str, float]

    def to_dict(self, features: tuple[str, ...] | None = None) -> dict[str, Any]:
        """JSON-safe form; `features` keeps only those (a compact form for pending decisions)."""
        kept = self.features if features is None else {k: self.features[k] for k in features}
        return {
            "decision_id": self.decision_id,
            "event_id": self.event_id,
            "entity": self.entity,
            "action": self.action,
            "prob": self.prob,
            "policy": self.policy,
            "policy_version": self.policy_version,
            "state_key": self.state_key,
            "event_ts": self.event_ts,
            "decision_ts": self.decision_ts,
            "features": kept,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        return cls(
            decision_id=d["decision_id"],
            entity=d["entity"],
            action=d["action"],
            prob=float(d["prob"]),
            policy=d["policy"],
            policy_version=int(d["policy_version"]),
            state_key=d["state_key"],
            event_ts=float(d["event_ts"]),
            decision_ts=float(d["decision_ts"]),
            event_id=d["event_id"],
            features=d.get("features") or {},
        )


@dataclass(slots=True)
class Transition:
    """A decision judged by its outcome: the unit the learner applies to one table row.

    `origin` ("<topic>:<partition>") and `origin_offset` name the input record whose handling
    judged it (the label, or the event that met an early label): the learner's replay-safe check
    (see learning.already_applied).
    """

    decision_id: str
    state_key: str
    action: str
    prob: float
    reward: float
    next_state_key: str | None = None
    event_ts: float = 0.0
    origin: str | None = None
    origin_offset: int = -1

    def to_dict(self) -> dict[str, Any]:
        d = {
            "decision_id": self.decision_id,
            "state_key": self.state_key,
            "action": self.action,
            "prob": self.prob,
            "reward": self.reward,
            "next_state_key": self.next_state_key,
            "event_ts": self.event_ts,
        }
        if self.origin is not None:
            d["origin"] = self.origin
            d["origin_offset"] = self.origin_offset
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Transition:
        return cls(
            decision_id=d["decision_id"],
            state_key=d["state_key"],
            action=d["action"],
            prob=float(d["prob"]),
            reward=float(d["reward"]),
            next_state_key=d.get("next_state_key"),
            event_ts=float(d.get("event_ts") or 0.0),
            origin=d.get("origin"),
            origin_offset=int(d.get("origin_offset", -1)),
        )


@runtime_checkable
class Scenario(Protocol):
    """One decision problem. Events and outcomes are scenario-specific plain objects."""

    name: str
    actions: tuple[str, ...]
    outcome_features: tuple[str, ...]  # the features `reward` reads; pending decisions keep only these

    def parse(self, raw: bytes) -> Any:
        """Decode and validate one event; raise InvalidEvent(reason) for anything malformed."""

    def key(self, event: Any) -> str:
        """The entity key (account, intersection) the event's state lives under."""

    def event_id(self, event: Any) -> str:
        """The event's own unique id (transaction id, intersection+step)."""

    def event_ts(self, event: Any) -> float:
        """Event time, epoch seconds."""

    def initial_state(self) -> Any:
        """State for an entity never seen before."""

    def state_to_dict(self, state: Any) -> dict[str, Any]:
        """JSON-safe form of an entity's state (it is stored in a table and its changelog)."""

    def state_from_dict(self, data: dict[str, Any]) -> Any:
        """Inverse of `state_to_dict`."""

    def decision_id(self, event: Any) -> str:
        """Stable id of the decision for this event: the same in every process and replay."""

    def update(self, state: Any, event: Any) -> Any:
        """Fold the event into the entity's state (features, windows); returns the new state."""

    def observe(self, state: Any, event: Any) -> Observation:
        """Discretise state + event into the decision-table key, with the features behind it."""

    def baseline(self, obs: Observation) -> str:
        """The rule baseline's action for this observation."""

    def parse_outcome(self, raw: bytes) -> Any:
        """Decode one feedback record; raise InvalidEvent(reason) for anything malformed."""

    def outcome_decision_id(self, outcome: Any) -> str:
        """The decision id the outcome judges."""

    def reward(self, decision: Decision, outcome: Any) -> float:
        """Scalar reward (higher is better) of a decision given its outcome."""

    # Optional hooks, looked up with getattr by the adapters:
    #   record_outcome(stats: MutableMapping, outcome) -> None   side statistics learned from outcomes
    #   no_feedback_outcome(decision) -> outcome                   the outcome of an expired decision


STABLE_ID_SIZE = 12


def stable_id(*parts: str) -> str:
    """A short stable id: the same inputs give the same id in every process and every replay."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=STABLE_ID_SIZE).hexdigest()


def stable_ids(prefix: tuple[str, ...], lasts: list[bytes]) -> list[str]:
    """`stable_id(*prefix, last)` for many UTF-8 encoded `last` parts (the replay's columnar path)."""
    head = "\x1f".join((*prefix, "")).encode()
    blake2b = hashlib.blake2b
    return [blake2b(head + last, digest_size=STABLE_ID_SIZE).hexdigest() for last in lasts]


DRAW_DIGEST_SIZE = 64
DRAW_CHUNK = 7  # bytes per uniform: 56 bits, 9 uniforms per digest
DRAW_SCALE = float(1 << (8 * DRAW_CHUNK))


def draw_digest(seed: str) -> bytes:
    """The digest a `Draw` takes its first uniforms from (the replay's columnar path hashes in bulk)."""
    return hashlib.blake2b(seed.encode(), digest_size=DRAW_DIGEST_SIZE).digest()


def draw_digests_of_ids(prefix: tuple[str, ...], lasts: list[bytes], salt: bytes = b"") -> bytes:
    """`draw_digest(stable_id(*prefix, last) + suffix)` for many UTF-8 encoded `last` parts (`salt`:
    the encoded suffix), concatenated: the digests of the draws seeded by many decision ids.

    The same two hashes, fed incrementally: copies of hashers primed with the common prefix."""
    primed = hashlib.blake2b("\x1f".join((*prefix, "")).encode(), digest_size=STABLE_ID_SIZE)
    empty = hashlib.blake2b(digest_size=DRAW_DIGEST_SIZE)
    copy_id, copy_draw, hexlify = primed.copy, empty.copy, binascii.hexlify
    out = []
    for last in lasts:
        stable = copy_id()
        stable.update(last)
        draw = copy_draw()
        draw.update(hexlify(stable.digest()))  # == stable.hexdigest().encode()
        if salt:
            draw.update(salt)
        out.append(draw.digest())
    return b"".join(out)


class Draw:
    """Deterministic uniform numbers seeded by a decision id.

    Exploration driven by the decision id makes a re-delivered event get the same action and lets
    a replay reproduce live decisions exactly; a process-wide RNG could do neither.
    Uniform k is big-endian bytes [7k, 7k+7) of the digest over 2**56 (`DRAW_CHUNK`, `DRAW_SCALE`).
    """

    __slots__ = ("_digest", "_i")

    def __init__(self, seed: str) -> None:
        self._digest = draw_digest(seed)
        self._i = 0

    def uniform(self) -> float:
        """The next uniform in [0, 1); 9 draws per seed, then the digest is extended."""
        if self._i + DRAW_CHUNK > len(self._digest):
            self._digest = hashlib.blake2b(self._digest, digest_size=DRAW_DIGEST_SIZE).digest()
            self._i = 0
        chunk = int.from_bytes(self._digest[self._i : self._i + DRAW_CHUNK], "big")
        self._i += DRAW_CHUNK
        return chunk / DRAW_SCALE


def judge(scenario: Scenario, decision: Decision, outcome: Any) -> Transition:
    """A decision and its outcome make a transition: what the learner applies."""
    return Transition(
        decision_id=decision.decision_id,
        state_key=decision.state_key,
        action=decision.action,
        prob=decision.prob,
        reward=scenario.reward(decision, outcome),
        next_state_key=getattr(outcome, "next_state_key", None),
        event_ts=decision.event_ts,
    )
