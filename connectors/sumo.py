"""The SUMO simulator as a traffic source and actuator: readings out, green-phase actions in.

The simulator, not the decision maker, owns signal safety: every switch goes through a yellow of
`yellow_s` and no green ends before `min_green_s`; a missing, late or invalid action keeps the
current phase and is counted. So a slow or broken agent degrades the traffic, never the safety.

Each intersection asks for a decision every `control_s` seconds of green; after a switch the next
reading comes once the new green has run its minimum (yellow + min green later), so no reading is
wasted on a decision the constraint would override anyway.

libsumo (in-process, ~5x faster than the TraCI socket here) is used when installed, else traci.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from connectors.sumo_net import INSTALL_HINT, binary

GREEN = "Gg"


def load_traci(prefer_libsumo: bool = True) -> ModuleType:
    """The TraCI API module, imported lazily so the rest of the project never needs SUMO."""
    names = ("libsumo", "traci") if prefer_libsumo else ("traci",)
    for name in names:
        try:
            return __import__(name)
        except ImportError:
            continue
    raise RuntimeError(INSTALL_HINT)


def is_green(state: str) -> bool:
    """A program phase is a green phase if it gives some movement right of way and has no yellow."""
    return any(c in GREEN for c in state) and not any(c in "yYu" for c in state)


def yellow_between(current: str, target: str) -> str:
    """The transition state: movements that lose their green show yellow, the others hold."""
    return "".join("y" if c in GREEN and t not in GREEN else c for c, t in zip(current, target, strict=True))


@dataclass(slots=True)
class Signal:
    """One traffic light: its layout (from the network) and its controller state (ours)."""

    tls_id: str
    green_states: list[str]
    plan: list[float]  # the network program's green durations: the fixed-time baseline
    approach_lanes: list[list[str]]
    phase_approaches: list[list[int]]
    phase: int = 0
    green_since: float = 0.0
    yellow_until: float | None = None
    target: int = 0
    next_due: float = 0.0
    counts: dict[str, int] = field(
        default_factory=lambda: {"applied": 0, "switches": 0, "missing": 0, "invalid": 0, "too_early": 0}
    )


def _approaches(traci: ModuleType, tls_id: str, greens: list[str]) -> tuple[list[list[str]], list[list[int]]]:
    """Group incoming lanes into approaches: same edge, served by the same green phases.

    A lane is served by the phases that give one of its links a protected green ('G'); lanes with
    only permissive greens ('g') fall back to those. A left-turn bay thus forms its own approach,
    which is what lets pressure tell the through phase from the left-turn phase.
    """
    links_of: dict[str, list[int]] = {}
    for index, links in enumerate(traci.trafficlight.getControlledLinks(tls_id)):
        for in_lane, _out, _via in links:
            links_of.setdefault(in_lane, []).append(index)
    groups: dict[tuple[str, tuple[int, ...]], list[str]] = {}
    for lane, idx in links_of.items():
        served = tuple(p for p, s in enumerate(greens) if any(s[i] == "G" for i in idx))
        served = served or tuple(p for p, s in enumerate(greens) if any(s[i] == "g" for i in idx))
        groups.setdefault((traci.lane.getEdgeID(lane), served), []).append(lane)
    keys = sorted(groups)
    lanes = [sorted(groups[k]) for k in keys]
    phase_approaches = [
        [a for a, (_edge, served) in enumerate(keys) if p in served] for p in range(len(greens))
    ]
    return lanes, phase_approaches


@dataclass(slots=True)
class SimSummary:
    """What a run achieved, from the tripinfo file and the queue samples."""

    vehicles_completed: int
    vehicles_unfinished: int
    avg_wait_s: float
    avg_travel_s: float
    avg_depart_delay_s: float
    mean_queue: float
    max_queue: int
    teleports: int
    sim_seconds: float
    queue_series: list[tuple[float, float]]  # (interval start s, mean total halting in it)
    signal_counts: dict[str, dict[str, int]]

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def parse_tripinfo(path: Path) -> tuple[list[dict[str, float]], int]:
    """(finished trips as numbers, unfinished count); unfinished trips are written with arrival -1."""
    done: list[dict[str, float]] = []
    unfinished = 0
    for _event, elem in ET.iterparse(path):
        if elem.tag == "tripinfo":
            if float(elem.get("arrival", "-1")) < 0:
                unfinished += 1
            else:
                done.append(
                    {
                        "wait": float(elem.get("waitingTime", 0)),
                        "duration": float(elem.get("duration", 0)),
                        "depart_delay": float(elem.get("departDelay", 0)),
                    }
                )
            elem.clear()
    return done, unfinished


def _mean(xs: Iterable[float]) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else 0.0


class SumoSim:
    """A running SUMO simulation under our signal control; use as a context manager."""

    def __init__(
        self,
        net_file: Path,
        route_file: Path,
        out_dir: Path,
        *,
        seed: int = 1,
        control_s: float = 5.0,
        min_green_s: float = 10.0,
        yellow_s: float = 3.0,
        sample_s: int = 5,
        series_interval_s: int = 60,
        epoch0: float = 0.0,
        prefer_libsumo: bool = True,
    ) -> None:
        self.net_file, self.route_file, self.out_dir = net_file, route_file, out_dir
        self.seed = seed
        self.control_s, self.min_green_s, self.yellow_s = control_s, min_green_s, yellow_s
        self.sample_s, self.series_interval_s = sample_s, series_interval_s
        self.epoch0 = epoch0
        self.tripinfo = out_dir / "tripinfo.xml"
        self.traci = load_traci(prefer_libsumo)
        self.signals: dict[str, Signal] = {}
        self.time = 0.0
        self._lanes: list[str] = []
        self._samples: list[tuple[float, int]] = []
        self._teleports = 0
        self._running = False

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> SumoSim:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.traci.start(
            [
                binary("sumo"),
                "-n", str(self.net_file),
                "-r", str(self.route_file),
                "--step-length", "1",
                "--seed", str(self.seed),
                "--no-step-log", "true",
                "--no-warnings", "true",
                "--duration-log.disable", "true",
                "--tripinfo-output", str(self.tripinfo),
                "--tripinfo-output.write-unfinished", "true",
            ]
        )  # fmt: skip
        self._running = True
        tl = self.traci.trafficlight
        for tls_id in tl.getIDList():
            phases = tl.getAllProgramLogics(tls_id)[0].phases
            greens = [p.state for p in phases if is_green(p.state)]
            lanes, groups = _approaches(self.traci, tls_id, greens)
            self.signals[tls_id] = Signal(
                tls_id=tls_id,
                green_states=greens,
                plan=[float(p.duration) for p in phases if is_green(p.state)],
                approach_lanes=lanes,
                phase_approaches=groups,
                next_due=self.min_green_s,
            )
            tl.setRedYellowGreenState(tls_id, greens[0])
        self._lanes = sorted({lane for s in self.signals.values() for a in s.approach_lanes for lane in a})
        return self

    def close(self) -> None:
        """Idempotent; flushes the tripinfo file that `summary()` reads."""
        if self._running:
            self._running = False
            self.traci.close()

    def __enter__(self) -> SumoSim:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- perceive ----------------------------------------------------------------------------
    def due(self) -> list[str]:
        """Intersections whose next decision is due now (sorted: deterministic order)."""
        return sorted(
            t for t, s in self.signals.items() if s.yellow_until is None and s.next_due <= self.time + 1e-9
        )

    def readings(self, tls_ids: Iterable[str] | None = None, run: str = "") -> list[dict[str, Any]]:
        """Reading-as-dict (streams.scenarios.traffic.Reading) for each listed (default: every) light."""
        lane = self.traci.lane
        step = round(self.time)
        out = []
        for tls_id in sorted(self.signals) if tls_ids is None else tls_ids:
            s = self.signals[tls_id]
            approaches = [
                {
                    "halting": sum(lane.getLastStepHaltingNumber(x) for x in lanes),
                    "vehicles": sum(lane.getLastStepVehicleNumber(x) for x in lanes),
                    "waiting_s": float(sum(lane.getWaitingTime(x) for x in lanes)),
                }
                for lanes in s.approach_lanes
            ]
            out.append(
                {
                    "intersection_id": tls_id,
                    "step": step,
                    "sim_ts": self.epoch0 + self.time,
                    "phase": s.phase,
                    "time_in_phase": self.time - s.green_since,
                    "approaches": approaches,
                    "phase_approaches": s.phase_approaches,
                    "run": run,
                }
            )
        return out

    # --- act ---------------------------------------------------------------------------------
    def apply(self, tls_id: str, action: int | str | None) -> bool:
        """Execute a decision; True if the signal starts switching. Keeping is always safe."""
        s = self.signals[tls_id]
        s.next_due = self.time + self.control_s
        if action is None:
            s.counts["missing"] += 1
            return False
        try:
            target = int(action)
        except (TypeError, ValueError):
            target = -1
        if not 0 <= target < len(s.green_states):
            s.counts["invalid"] += 1
            return False
        s.counts["applied"] += 1
        if target == s.phase or s.yellow_until is not None:
            return False
        if self.time - s.green_since < self.min_green_s - 1e-9:
            s.counts["too_early"] += 1
            return False
        s.counts["switches"] += 1
        s.target = target
        s.yellow_until = self.time + self.yellow_s
        s.next_due = s.yellow_until + self.min_green_s
        self.traci.trafficlight.setRedYellowGreenState(
            tls_id, yellow_between(s.green_states[s.phase], s.green_states[target])
        )
        return True

    def step(self, seconds: float = 1.0) -> None:
        """Advance `seconds` of simulated time, ending yellows and sampling queues on the way."""
        sim, tl = self.traci.simulation, self.traci.trafficlight
        for _ in range(round(seconds)):
            sim.step()
            self.time = sim.getTime()
            self._teleports += sim.getStartingTeleportNumber()
            for s in self.signals.values():
                if s.yellow_until is not None and self.time >= s.yellow_until - 1e-9:
                    s.phase, s.green_since, s.yellow_until = s.target, self.time, None
                    tl.setRedYellowGreenState(s.tls_id, s.green_states[s.phase])
            if int(self.time) % self.sample_s == 0:
                halting = self.traci.lane.getLastStepHaltingNumber
                self._samples.append((self.time, sum(halting(x) for x in self._lanes)))

    def vehicles_pending(self) -> int:
        """Vehicles in the network or still to depart: the run is over when this is 0."""
        return self.traci.simulation.getMinExpectedNumber()

    # --- report ------------------------------------------------------------------------------
    def summary(self) -> SimSummary:
        """Averages over trips and queue samples; call after close() so tripinfo is complete."""
        if self._running:
            raise RuntimeError("summary() needs the simulation closed (tripinfo is written on close)")
        trips, unfinished = parse_tripinfo(self.tripinfo)
        buckets: dict[int, list[int]] = {}
        for t, q in self._samples:
            buckets.setdefault(int(t // self.series_interval_s), []).append(q)
        return SimSummary(
            vehicles_completed=len(trips),
            vehicles_unfinished=unfinished,
            avg_wait_s=_mean(t["wait"] for t in trips),
            avg_travel_s=_mean(t["duration"] for t in trips),
            avg_depart_delay_s=_mean(t["depart_delay"] for t in trips),
            mean_queue=_mean(q for _t, q in self._samples),
            max_queue=max((q for _t, q in self._samples), default=0),
            teleports=self._teleports,
            sim_seconds=self.time,
            queue_series=[
                (b * float(self.series_interval_s), _mean(qs)) for b, qs in sorted(buckets.items())
            ],
            signal_counts={t: dict(s.counts) for t, s in sorted(self.signals.items())},
        )
