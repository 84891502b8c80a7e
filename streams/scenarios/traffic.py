"""Traffic scenario: adaptive signal control, one decision per intersection reading.

Pure Python and network-agnostic: a reading carries its own phase layout (`phase_approaches`: which
approaches each green phase serves), so the same core drives a single junction, a grid or a real
city without knowing its geometry. The simulator (connectors/sumo.py) applies the decision and
enforces the same minimum green and yellow the core documents here.

Actions are absolute green-phase indices "0".."max_phases-1". An action an intersection cannot take
(an index beyond its phases, or any switch before the minimum green) means "keep the current
phase": the signal never goes dark or skips its yellow because of a bad decision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.core.scenario import Decision, InvalidEvent, Observation, stable_id

NAME = "traffic"
MAX_PHASES = 4
MIN_GREEN_S = 10.0
YELLOW_S = 3.0
# Halting-vehicle bins per phase group: 0 / 1-3 / 4-8 / 9+. Coarse on purpose: a tabular learner
# needs each key seen many times, and the bins separate "empty", "a few", "a platoon", "spill-back".
QUEUE_BINS = (0, 3, 8)
REWARDS = ("queue", "queue_delta", "wait_delta")


@dataclass(slots=True)
class Approach:
    """One incoming movement group: the lanes of an edge served by the same green phases."""

    halting: int
    vehicles: int
    waiting_s: float


@dataclass(slots=True)
class Reading:
    """One intersection's detector snapshot: the traffic scenario's event."""

    intersection_id: str
    step: int
    sim_ts: float
    phase: int
    time_in_phase: float
    approaches: list[Approach]
    phase_approaches: list[list[int]]
    run: str = ""  # distinguishes simulation runs that reuse the same steps (training episodes)

    @property
    def n_phases(self) -> int:
        return len(self.phase_approaches)

    def phase_queues(self) -> list[int]:
        """Halting vehicles waiting for each green phase: the queue the phase would serve."""
        return [sum(self.approaches[a].halting for a in group) for group in self.phase_approaches]

    def to_dict(self) -> dict[str, Any]:
        return {
            "intersection_id": self.intersection_id,
            "step": self.step,
            "sim_ts": self.sim_ts,
            "phase": self.phase,
            "time_in_phase": self.time_in_phase,
            "approaches": [
                {"halting": a.halting, "vehicles": a.vehicles, "waiting_s": a.waiting_s}
                for a in self.approaches
            ],
            "phase_approaches": self.phase_approaches,
            "run": self.run,
        }


@dataclass(slots=True)
class Measurement:
    """Feedback: the intersection as the next reading found it, judging the previous decision.

    `next_state_key` lets Q-learning with gamma > 0 bootstrap from the state the decision led to.
    """

    intersection_id: str
    step: int
    decision_id: str
    total_halting: int
    total_waiting_s: float
    next_state_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "intersection_id": self.intersection_id,
            "step": self.step,
            "decision_id": self.decision_id,
            "total_halting": self.total_halting,
            "total_waiting_s": self.total_waiting_s,
            "next_state_key": self.next_state_key,
        }


@dataclass(slots=True)
class IntersectionState:
    """Per-intersection memory; the key itself is computed from the reading alone.

    `last_offsets` (partition -> last applied input offset) is the decide agent's idempotence record.
    """

    readings: int = 0
    switches: int = 0
    last_step: int = -1
    last_phase: int = -1
    last_offsets: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "readings": self.readings,
            "switches": self.switches,
            "last_step": self.last_step,
            "last_phase": self.last_phase,
            "offsets": dict(self.last_offsets),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IntersectionState:
        return cls(
            readings=int(d["readings"]),
            switches=int(d["switches"]),
            last_step=int(d["last_step"]),
            last_phase=int(d["last_phase"]),
            last_offsets={str(k): int(v) for k, v in (d.get("offsets") or {}).items()},
        )


# --- validation helpers ------------------------------------------------------------------------


def _field(d: dict[str, Any], name: str) -> Any:
    try:
        return d[name]
    except KeyError:
        raise InvalidEvent(f"missing field {name!r}") from None


def _int(d: dict[str, Any], name: str, low: int = 0) -> int:
    v = _field(d, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise InvalidEvent(f"{name} must be an integer >= {low}, got {v!r}")
    return v


def _num(d: dict[str, Any], name: str, low: float = 0.0) -> float:
    v = _field(d, name)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < low:
        raise InvalidEvent(f"{name} must be a finite number >= {low}, got {v!r}")
    return float(v)


def _str(d: dict[str, Any], name: str) -> str:
    v = _field(d, name)
    if not isinstance(v, str) or not v:
        raise InvalidEvent(f"{name} must be a non-empty string, got {v!r}")
    return v


def _object(raw: bytes) -> dict[str, Any]:
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    if not isinstance(d, dict):
        raise InvalidEvent("not a JSON object")
    return d


def _approach(a: Any) -> Approach:
    if not isinstance(a, dict):
        raise InvalidEvent("approach must be an object")
    halting, vehicles = _int(a, "halting"), _int(a, "vehicles")
    if halting > vehicles:
        raise InvalidEvent(f"approach has more halting ({halting}) than vehicles ({vehicles})")
    return Approach(halting, vehicles, _num(a, "waiting_s"))


def _phase_groups(v: Any, n_approaches: int, max_phases: int) -> list[list[int]]:
    if not isinstance(v, list) or not v:
        raise InvalidEvent("phase_approaches must be a non-empty list")
    if len(v) > max_phases:
        raise InvalidEvent(f"{len(v)} green phases, more than the {max_phases} actions")
    for group in v:
        if not isinstance(group, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_approaches for i in group
        ):
            raise InvalidEvent("phase_approaches entries must be lists of approach indices")
    return v


# --- discretisation and baselines ---------------------------------------------------------------


def queue_bin(halting: int) -> int:
    """0 for an empty queue, then one bin per QUEUE_BINS threshold passed."""
    return sum(halting > edge for edge in QUEUE_BINS)


def min_green_ok(phase_time: float, min_green_s: float = MIN_GREEN_S) -> bool:
    return phase_time >= min_green_s - 1e-9


def state_key(reading: Reading, min_green_s: float = MIN_GREEN_S) -> str:
    """`p<phase>|g<min green satisfied>|q<bin per phase>`, e.g. `p0|g1|q3102`."""
    bins = "".join(str(queue_bin(q)) for q in reading.phase_queues())
    return f"p{reading.phase}|g{int(min_green_ok(reading.time_in_phase, min_green_s))}|q{bins}"


def features(reading: Reading, min_green_s: float = MIN_GREEN_S) -> dict[str, float]:
    """The raw numbers behind the key; also all a baseline needs (`baseline` sees only these)."""
    out = {
        "phase": float(reading.phase),
        "n_phases": float(reading.n_phases),
        "time_in_phase": reading.time_in_phase,
        "min_green_ok": float(min_green_ok(reading.time_in_phase, min_green_s)),
        "total_halting": float(sum(a.halting for a in reading.approaches)),
        "total_vehicles": float(sum(a.vehicles for a in reading.approaches)),
        "total_waiting_s": sum(a.waiting_s for a in reading.approaches),
    }
    for i, q in enumerate(reading.phase_queues()):
        out[f"q{i}"] = float(q)
    return out


def max_pressure_phase(queues: Sequence[float], phase: int, can_switch: bool) -> int:
    """Serve the phase with the largest waiting queue; ties and the minimum green keep the current one.

    Pressure here is the incoming queue only (longest-queue-first): a reading carries no downstream
    queues, and at the edge of the network the exits are free-flowing anyway.
    """
    if not can_switch or not queues:
        return phase
    best = max(queues)
    if 0 <= phase < len(queues) and queues[phase] >= best:
        return phase
    return list(queues).index(best)


def max_pressure_action(reading: Reading, min_green_s: float = MIN_GREEN_S) -> str:
    can = min_green_ok(reading.time_in_phase, min_green_s)
    return str(max_pressure_phase(reading.phase_queues(), reading.phase, can))


def fixed_time_action(reading: Reading, plan: Sequence[float]) -> str:
    """The network's own program: each green phase for its planned seconds, then the next one.

    `plan[i]` is green phase i's duration; decisions arrive every few seconds, so a phase ends at
    the first reading at or after its planned duration.
    """
    n = reading.n_phases
    duration = plan[reading.phase] if reading.phase < len(plan) else 0.0
    if reading.time_in_phase + 1e-9 < duration:
        return str(reading.phase)
    return str((reading.phase + 1) % n)


# --- the scenario ------------------------------------------------------------------------------


class TrafficScenario:
    """Scenario protocol implementation for adaptive signal control.

    reward: "queue" = -halting at the next reading; "queue_delta" = halting now - halting next;
    "wait_delta" = accumulated waiting now - waiting next (seconds). The deltas are centred near
    zero, which suits a table whose unseen actions start at 0.
    """

    name = NAME
    outcome_features = ("total_halting", "total_waiting_s")  # what `reward` reads

    def __init__(
        self,
        max_phases: int = MAX_PHASES,
        min_green_s: float = MIN_GREEN_S,
        yellow_s: float = YELLOW_S,
        reward_kind: str = "queue_delta",
    ) -> None:
        if reward_kind not in REWARDS:
            raise ValueError(f"unknown reward {reward_kind!r}; valid: {', '.join(REWARDS)}")
        self.max_phases = max_phases
        self.actions: tuple[str, ...] = tuple(str(i) for i in range(max_phases))
        self.min_green_s = min_green_s
        self.yellow_s = yellow_s
        self.reward_kind = reward_kind

    # events
    def parse(self, raw: bytes) -> Reading:
        d = _object(raw)
        approaches_raw = _field(d, "approaches")
        if not isinstance(approaches_raw, list) or not approaches_raw:
            raise InvalidEvent("approaches must be a non-empty list")
        approaches = [_approach(a) for a in approaches_raw]
        groups = _phase_groups(_field(d, "phase_approaches"), len(approaches), self.max_phases)
        phase = _int(d, "phase")
        if phase >= len(groups):
            raise InvalidEvent(f"phase {phase} out of range for {len(groups)} green phases")
        run = d.get("run", "")
        if not isinstance(run, str):
            raise InvalidEvent("run must be a string")
        return Reading(
            intersection_id=_str(d, "intersection_id"),
            step=_int(d, "step"),
            sim_ts=_num(d, "sim_ts"),
            phase=phase,
            time_in_phase=_num(d, "time_in_phase"),
            approaches=approaches,
            phase_approaches=groups,
            run=run,
        )

    def key(self, event: Reading) -> str:
        return event.intersection_id

    def event_id(self, event: Reading) -> str:
        prefix = f"{event.run}/" if event.run else ""
        return f"{prefix}{event.intersection_id}/{event.step}"

    def decision_id(self, event: Reading) -> str:
        """Stable per (run, intersection, step): a re-delivered reading gets the same decision."""
        parts = (event.run,) if event.run else ()
        return stable_id(NAME, *parts, event.intersection_id, str(event.step))

    def event_ts(self, event: Reading) -> float:
        return event.sim_ts

    # state
    def initial_state(self) -> IntersectionState:
        return IntersectionState()

    def update(self, state: IntersectionState, event: Reading) -> IntersectionState:
        switched = state.last_phase >= 0 and event.phase != state.last_phase
        return IntersectionState(
            readings=state.readings + 1,
            switches=state.switches + switched,
            last_step=event.step,
            last_phase=event.phase,
            last_offsets=state.last_offsets,
        )

    def state_to_dict(self, state: IntersectionState) -> dict[str, Any]:
        return state.to_dict()

    def state_from_dict(self, data: dict[str, Any]) -> IntersectionState:
        return IntersectionState.from_dict(data)

    def observe(self, state: IntersectionState, event: Reading) -> Observation:
        return Observation(state_key(event, self.min_green_s), features(event, self.min_green_s))

    # decisions
    def baseline(self, obs: Observation) -> str:
        """Max-pressure, from the observation's features alone."""
        f = obs.features
        queues = [f[f"q{i}"] for i in range(int(f["n_phases"]))]
        return str(max_pressure_phase(queues, int(f["phase"]), f["min_green_ok"] >= 1.0))

    def allowed(self, obs: Observation, action: str) -> bool:
        """Whether the signal may take `action` now; otherwise it keeps its current phase."""
        f = obs.features
        phase = int(f["phase"])
        if action == str(phase):
            return True
        valid = action.isdigit() and int(action) < int(f["n_phases"])
        return valid and f["min_green_ok"] >= 1.0

    def effective_action(self, obs: Observation, action: str) -> str:
        """The action the signal really executes: the chosen one if allowed, else keep the phase."""
        return action if self.allowed(obs, action) else str(int(obs.features["phase"]))

    # feedback
    def measurement(self, decision_id: str, reading: Reading) -> Measurement:
        """The feedback record the next reading produces for the previous decision."""
        return Measurement(
            intersection_id=reading.intersection_id,
            step=reading.step,
            decision_id=decision_id,
            total_halting=sum(a.halting for a in reading.approaches),
            total_waiting_s=sum(a.waiting_s for a in reading.approaches),
            next_state_key=state_key(reading, self.min_green_s),
        )

    def parse_outcome(self, raw: bytes) -> Measurement:
        d = _object(raw)
        nxt = d.get("next_state_key")
        if nxt is not None and not isinstance(nxt, str):
            raise InvalidEvent("next_state_key must be a string or null")
        return Measurement(
            intersection_id=_str(d, "intersection_id"),
            step=_int(d, "step"),
            decision_id=_str(d, "decision_id"),
            total_halting=_int(d, "total_halting"),
            total_waiting_s=_num(d, "total_waiting_s"),
            next_state_key=nxt,
        )

    def outcome_decision_id(self, outcome: Measurement) -> str:
        return outcome.decision_id

    def reward(self, decision: Decision, outcome: Measurement) -> float:
        if self.reward_kind == "queue":
            return -float(outcome.total_halting)
        if self.reward_kind == "queue_delta":
            return decision.features.get("total_halting", 0.0) - outcome.total_halting
        return decision.features.get("total_waiting_s", 0.0) - outcome.total_waiting_s
