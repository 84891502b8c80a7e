"""Learning lag: from a feedback record being produced to the updated decision-table row being used
by every worker.

Method (end to end, through the decide path itself, nothing read from inside the workers):
- probes: every few milliseconds, one new transaction per events partition, each the FIRST
  transaction of a new account with a fixed shape, so every probe lands in the same decision-table
  state (`PROBE_STATE`). Each probe's action says which version of that row its worker decided
  with (`policy_version`) and when (`decision_ts`). Partitions are owned by workers, so probes on
  every partition watch every worker;
- a trial: one more transaction of that shape (the "seed") is decided; then its label is produced at
  t0. The join agent turns it into a transition for PROBE_STATE, the learn agent owning that row
  writes version v+1 to the decisions changelog, every worker's GlobalTable applies it;
- lag of the trial = max over partitions of (decision_ts of the first probe decided with version
  >= v+1) - t0: the row is visible in EVERY worker. It is an upper bound; the previous probe of the
  same partition (still on the old version) bounds it from below, and the gap between the two is
  reported as the resolution. The time the row reached the changelog is reported too, which splits
  the lag into "feedback -> row written" (join + learn) and "written -> applied everywhere".
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Producer

from connectors.partitioning import partition_for
from perf.readback import OutputWatch, Record, Tail
from streams.quality import percentiles
from streams.settings import Settings

PROBE_STATE = "a1|v0|z0|t0|n1|c0"  # amount 50, first tx of the account, unseen terminal, pos, home
PROBE_INTERVAL_S = 0.005
TRIAL_TIMEOUT_S = 10.0


def transaction(txid: str, account: str, terminal: str) -> bytes:
    return orjson.dumps(
        {
            "transaction_id": txid,
            "account_id": account,
            "terminal_id": terminal,
            "amount": 50.0,
            "currency": "USD",
            "merchant_category": "5411",
            "country": "US",
            "channel": "pos",
            "event_ts": time.time(),
        }
    )


def label(txid: str, account: str, terminal: str) -> bytes:
    return orjson.dumps(
        {
            "transaction_id": txid,
            "account_id": account,
            "terminal_id": terminal,
            "is_fraud": False,
            "label_ts": time.time(),
        }
    )


class FreshAccounts:
    """New account ids by partition: a probe must be its account's first transaction."""

    def __init__(self, prefix: str, partitions: int) -> None:
        self.prefix, self.partitions, self.next = prefix, partitions, 0
        self.ready: dict[int, deque[str]] = {p: deque() for p in range(partitions)}

    def take(self, partition: int) -> str:
        while not self.ready[partition]:
            key = f"{self.prefix}{self.next}"
            self.next += 1
            self.ready[partition_for(key.encode(), self.partitions)].append(key)
        return self.ready[partition].popleft()


@dataclass
class Observed:
    """What the tails saw (written by their threads, read by the trial loop)."""

    probes: dict[int, list[tuple[float, int]]] = field(default_factory=dict)  # partition -> (ts, version)
    seeds: dict[str, int] = field(default_factory=dict)  # seed txid -> version it was decided with
    rows: list[tuple[float, int]] = field(default_factory=list)  # PROBE_STATE row writes: (ts, version)
    max_version: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_action(self, record: Record) -> None:
        action = orjson.loads(record.value or b"{}")
        event_id, version = action.get("event_id", ""), int(action.get("policy_version", 0))
        with self.lock:
            if event_id.startswith("probe-"):
                self.probes.setdefault(record.partition, []).append((action["decision_ts"], version))
                self.max_version = max(self.max_version, version)
            elif event_id.startswith("seed-"):
                self.seeds[event_id] = version

    def on_row(self, record: Record) -> None:
        if record.key == PROBE_STATE.encode() and record.value:
            with self.lock:
                self.rows.append((record.ts_ms / 1000.0, int(orjson.loads(record.value).get("v", 0))))


class Prober(threading.Thread):
    """One probe per partition every `interval_s`, until stopped."""

    def __init__(self, producer: Producer, topic: str, accounts: FreshAccounts, interval_s: float) -> None:
        super().__init__(daemon=True, name="lag-prober")
        self.producer, self.topic, self.accounts, self.interval_s = producer, topic, accounts, interval_s
        self._halt = threading.Event()
        self.sent = 0

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            for p in range(self.accounts.partitions):
                account = self.accounts.take(p)
                txid = f"probe-{account}"
                self.producer.produce(
                    self.topic, key=account, value=transaction(txid, account, f"T{txid}"[:64])
                )
                self.sent += 1
            self.producer.poll(0)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def measure_learning_lag(s: Settings, trials: int, log: Callable[[str], None] = lambda _m: None) -> dict:
    """Run `trials` feedback trials against ours' running deployment `s`; lag statistics in ms."""
    topics, run = s.topics(), uuid.uuid4().hex[:6]
    changelog = f"{s.app_id}-decisions-changelog"
    producer = Producer(s.producer_config(partitioner="murmur2_random", log_level=3, **{"linger.ms": 0}))
    accounts = FreshAccounts(f"lag{run}-", s.partitions)
    seen = Observed()
    tails = [
        Tail(s, topic, _high(s, topic), callback)
        for topic, callback in ((topics.actions, seen.on_action), (changelog, seen.on_row))
    ]
    prober = Prober(producer, topics.events, accounts, PROBE_INTERVAL_S)
    for tail in tails:
        tail.start()
    prober.start()
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    try:
        for k in range(trials):
            try:
                results.append(_trial(k, run, s, producer, accounts, seen))
            except TimeoutError as exc:
                errors.append(str(exc))
                if len(errors) >= 3:
                    break
                continue
            r = results[-1]
            log(
                f"learning lag trial {k + 1}/{trials}: first worker {r['first_ms']:.0f} ms, every worker "
                + (
                    f"{r['lag_ms']:.0f} ms"
                    if r["everywhere"]
                    else f"NOT within {TRIAL_TIMEOUT_S:.0f}s "
                    f"({r['partitions_seen']}/{s.partitions} partitions)"
                )
            )
            if sum(not x["everywhere"] for x in results) >= 3:
                errors.append("stopped after 3 trials whose row never reached every worker")
                break
    finally:
        prober.stop()
        producer.flush(10)
        for tail in tails:
            tail.stop()
    return _summary(results, errors, prober.sent)


def _summary(results: list[dict[str, Any]], errors: list[str], probes: int) -> dict[str, Any]:
    everywhere = [r for r in results if r["everywhere"]]
    lags = [r["lag_ms"] for r in everywhere]
    written = [r["row_written_ms"] for r in results if r["row_written_ms"] is not None]
    return {
        "method": "probe actions on every partition carry the new row version (see perf/learning_lag.py)",
        "trials": len(results),
        "visible_everywhere": len(everywhere),
        **(percentiles(lags, (50, 99)) if lags else {"p50": None, "p99": None}),
        "max": round(max(lags), 1) if lags else None,
        "first_worker_p50": percentiles([r["first_ms"] for r in results], (50,))["p50"] if results else None,
        "row_written_p50": percentiles(written, (50,))["p50"] if written else None,
        "resolution_ms_mean": round(sum(r["resolution_ms"] for r in everywhere) / len(everywhere), 2)
        if everywhere
        else None,
        "probes_sent": probes,
        "errors": errors,
    }


def _high(s: Settings, topic: str) -> dict[int, int]:
    watch = OutputWatch(s, topic)
    try:
        return watch.start
    finally:
        watch.close()


def _wait(predicate: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + TRIAL_TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def _trial(
    k: int, run: str, s: Settings, producer: Producer, accounts: FreshAccounts, seen: Observed
) -> dict:
    topics = s.topics()
    account = accounts.take(k % s.partitions)  # the feedback's partition (join, learner) varies too
    txid, terminal = f"seed-{run}-{k}", f"L{run}{k}"
    producer.produce(topics.events, key=account, value=transaction(txid, account, terminal))
    producer.flush(10)
    if not _wait(lambda: txid in seen.seeds):
        raise TimeoutError(f"trial {k}: no action for the seed event")
    with seen.lock:
        target = seen.max_version + 1
    t0 = time.time()
    producer.produce(
        topics.feedback, key=account, value=label(txid, account, terminal), timestamp=int(t0 * 1000)
    )
    producer.flush(10)

    def new_on(p: int) -> tuple[float, float] | None:
        """(decision time of the first probe on p with the new row, of the probe before it)."""
        ordered = sorted(seen.probes.get(p, ()))
        for i, (ts, v) in enumerate(ordered):
            if v >= target and ts >= t0:
                return ts, ordered[i - 1][0] if i > 0 else ts
        return None

    def visible_everywhere() -> bool:
        with seen.lock:
            return all(new_on(p) is not None for p in range(s.partitions))

    _wait(visible_everywhere)  # a row that never reaches some worker is reported as such
    with seen.lock:
        found = [hit for hit in (new_on(p) for p in range(s.partitions)) if hit is not None]
        written = next((ts for ts, v in seen.rows if v >= target), None)
    if not found:
        raise TimeoutError(f"trial {k}: version {target} of {PROBE_STATE} reached no worker")
    return {
        "everywhere": len(found) == s.partitions,
        "partitions_seen": len(found),
        "first_ms": round((min(ts for ts, _ in found) - t0) * 1000.0, 2),
        "lag_ms": round((max(ts for ts, _ in found) - t0) * 1000.0, 2)
        if len(found) == s.partitions
        else None,
        "resolution_ms": round(max(ts - before for ts, before in found) * 1000.0, 2),
        "row_written_ms": round((written - t0) * 1000.0, 2) if written is not None else None,
    }
