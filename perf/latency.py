"""Event->action latency of ours under open-loop load at fractions of its measured maximum rate.

Per level: fresh events (a second generator stream, so no transaction repeats) are sent on a Poisson
schedule at rate = level x max rate; once every action is in, the actions are read back and
latency = action timestamp - scheduled send time of its event (`ingest_ts`, see openloop.py). The
mean number of events in flight is measured directly, as the time average of (scheduled so far -
actioned so far) over the level: an estimate independent of the latencies, so Little's law
(L = lambda W) can be checked against it and the queueing model compared with both.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import orjson

from connectors.generate import RiskGenerator
from perf.openloop import poisson_schedule, send_on_schedule
from perf.readback import OutputWatch
from streams.quality import percentiles
from streams.settings import Settings

MIN_EVENTS = 300
SETTLE_S = 1.0  # between levels: commits and producer batches of the last level finish


@dataclass
class LevelResult:
    level: float  # fraction of the measured max rate
    rate: float  # offered arrival rate lambda, events/s
    measured_rate: float  # (n - 1) / schedule span
    events: int
    mean_ms: float
    latency_ms: dict[str, float]  # p50, p95, p99, p99.9
    in_flight: float  # time-average events in the system, measured
    send_max_behind_ms: float
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def in_flight_average(arrivals: list[float], departures: list[float]) -> float:
    """Time average of A(t) - D(t) over [first arrival, last arrival] (seconds in, events out)."""
    if len(arrivals) < 2:
        return 0.0
    start, end = min(arrivals), max(arrivals)
    steps = sorted(itertools.chain(((t, 1) for t in arrivals), ((t, -1) for t in departures)))
    area, count, prev = 0.0, 0, start
    for t, delta in steps:
        if t > end:
            break
        if t > prev:
            area += count * (t - prev)
            prev = t
        count += delta
    area += count * (end - prev)
    return area / (end - start) if end > start else 0.0


def event_stream(seed: int) -> Iterator[tuple[str, bytes]]:
    """An endless supply of fresh events (no transaction id repeats the workload's)."""
    for rec in RiskGenerator(seed).records(10**9):
        if rec.kind == "event":
            yield rec.key, rec.value


def run_levels(
    s: Settings,
    levels: tuple[float, ...],
    max_rate: float,
    seconds: float,
    seed: int,
    log: Callable[[str], None] = lambda _m: None,
) -> list[LevelResult]:
    """Run each level against ours' running deployment `s` (its events and actions topics)."""
    topics = s.topics()
    supply = event_stream(seed)
    watch = OutputWatch(s, topics.actions)
    results = []
    try:
        for i, level in enumerate(levels):
            rate = level * max_rate
            n = max(MIN_EVENTS, int(rate * seconds))
            events = list(itertools.islice(supply, n))
            watch.mark()
            schedule = poisson_schedule(n, rate, time.time() + 0.05, seed + i)
            log(f"latency: {level:.0%} of max = {rate:,.0f} events/s for {n / rate:.1f}s ({n:,} events)")
            report = send_on_schedule(s, topics.events, events, schedule)
            done = watch.wait(n, timeout_s=60.0 + n / max(rate, 1.0))
            result = _level_result(level, rate, n, watch, report.max_behind_ms)
            if not done:
                result.error = f"only {watch.count()} of {n} actions arrived"
            results.append(result)
            time.sleep(SETTLE_S)
    finally:
        watch.close()
    return results


def _level_result(level: float, rate: float, n: int, watch: OutputWatch, behind_ms: float) -> LevelResult:
    arrivals, departures, latencies = [], [], []
    for record in watch.read(values=True):
        scheduled_ms = round(orjson.loads(record.value)["ingest_ts"] * 1000.0)
        arrivals.append(scheduled_ms / 1000.0)
        departures.append(record.ts_ms / 1000.0)
        latencies.append(float(record.ts_ms - scheduled_ms))
    span = max(arrivals) - min(arrivals) if len(arrivals) > 1 else 0.0
    return LevelResult(
        level=level,
        rate=round(rate, 1),
        measured_rate=round((len(arrivals) - 1) / span, 1) if span > 0 else 0.0,
        events=len(latencies),
        mean_ms=round(sum(latencies) / len(latencies), 3) if latencies else 0.0,
        latency_ms=percentiles(latencies),
        in_flight=round(in_flight_average(arrivals, departures), 3),
        send_max_behind_ms=behind_ms,
    )
