"""Decision quality and latency of a run, computed from the actions that reached Kafka.

Shared by the demo, the tests and the bench: one definition of "cost per 1,000 transactions",
"fraud caught" and "event->action latency".
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.scenarios.risk import RiskScenario


def percentiles(values: list[float], points: tuple[float, ...] = (50, 95, 99, 99.9)) -> dict[str, float]:
    """Nearest-rank percentiles, keyed "p50", "p95", ...; zeros for an empty list."""
    if not values:
        return {f"p{p:g}": 0.0 for p in points}
    ordered = sorted(values)
    n = len(ordered)
    return {f"p{p:g}": round(ordered[min(n - 1, max(0, int(p / 100 * n + 0.5) - 1))], 3) for p in points}


@dataclass
class ActionLog:
    """Collects action records (thread-safe append from a TopicCollector)."""

    by_id: dict[str, tuple[float, str, float, float, float]] = field(default_factory=dict)
    by_action: Counter[str] = field(default_factory=Counter)
    ids_per_event: dict[str, set[str]] = field(default_factory=dict)
    total: int = 0
    last_ts: float = 0.0
    conflicts: int = 0  # the same decision id seen with a different action
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_record(self, key: Any, value: bytes, ts: float, *rest: Any) -> None:
        action = orjson.loads(value)
        decision_id = action["decision_id"]
        with self._lock:
            self.total += 1
            self.last_ts = max(self.last_ts, ts)
            known = self.by_id.get(decision_id)
            if known is not None:
                self.conflicts += known[1] != action["action"]
                return
            latency_ms = (ts - action["ingest_ts"]) * 1000.0 if action.get("ingest_ts") else 0.0
            amount = float(action["features"].get("amount", 0.0))
            self.by_id[decision_id] = (action["event_ts"], action["action"], amount, latency_ms, ts)
            self.ids_per_event.setdefault(action["event_id"], set()).add(decision_id)
            self.by_action[action["action"]] += 1

    @property
    def distinct(self) -> int:
        return len(self.by_id)

    def latencies_ms(self) -> list[float]:
        with self._lock:
            return [v[3] for v in self.by_id.values()]

    def event_ids(self) -> dict[str, str]:
        """event id -> decision id (for joining actions with labels by transaction)."""
        with self._lock:
            return {event_id: next(iter(ids)) for event_id, ids in self.ids_per_event.items()}


def cost_summary(log: ActionLog, labels: dict[str, bool], fifths: int = 5) -> dict[str, float]:
    """Cost per 1,000, fraud caught and false declines for the first and the last fifth (event time).

    A transaction without a label counts as legit: the scenario's no-feedback rule.
    """
    scenario = RiskScenario()
    with log._lock:
        by_decision = dict(log.by_id)
    decision_of_event = log.event_ids()
    rows = []
    for event_id, decision_id in decision_of_event.items():
        event_ts, action, amount, _lat, _ts = by_decision[decision_id]
        rows.append((event_ts, action, amount, labels.get(event_id, False)))
    rows.sort()
    out: dict[str, float] = {}
    if not rows:
        return out
    size = max(1, len(rows) // fifths)
    for name, part in (("first", rows[:size]), ("last", rows[-size:]), ("all", rows)):
        cost = sum(scenario.cost(action, fraud, amount) for _, action, amount, fraud in part)
        frauds = [action for _, action, _, fraud in part if fraud]
        legit_declines = sum(1 for _, action, _, fraud in part if not fraud and action == "decline")
        legit = len(part) - len(frauds)
        out[f"cost_per_1k_{name}"] = round(1000.0 * cost / len(part), 2)
        out[f"fraud_caught_{name}"] = (
            round(sum(a != "approve" for a in frauds) / len(frauds), 4) if frauds else 0.0
        )
        out[f"false_declines_per_1k_{name}"] = round(1000.0 * legit_declines / legit, 2) if legit else 0.0
    return out
