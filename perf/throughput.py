"""One throughput run: start an implementation on the pre-loaded workload, wait for every action,
stop it, and measure from the actions themselves.

Definition (the same for every implementation): throughput = N / (t_last - t_first), where
t_first = the earliest `decision_ts` among the N actions (the wall-clock time the first event was
decided: every implementation stamps it through the shared core) and t_last = the latest Kafka
timestamp among them (CreateTime: when its producer created the last action record). So the clock
runs from the first event consumed and decided to the last action produced: all processing, state
writes and output of every event, but not the start-up before the first event (imports, group
join, table recovery), which differs by seconds between frameworks and is not paid per event.
CPU seconds per 1,000 events are taken over the same window; peak RSS over the whole run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from perf.implementations import RunSpec, stop_all
from perf.profile import Profiler
from perf.readback import OutputWatch, Record
from perf.sampler import TreeSampler
from streams.settings import Settings


@dataclass
class RunResult:
    name: str
    eps: float | None = None
    cpu_s_per_1k: float | None = None
    peak_rss_mb: float | None = None
    outputs: int = 0
    window_s: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def processing_window(records: list[Record]) -> tuple[float, float] | None:
    """(first decision, last action produced) in epoch seconds, or None without usable actions."""
    first = min((orjson.loads(r.value)["decision_ts"] for r in records if r.value), default=None)
    if first is None:
        return None
    last = max(r.ts_ms for r in records) / 1000.0
    return (first, last) if last > first else None


def measure(
    spec: RunSpec,
    settings: Settings,
    n: int,
    timeout_s: float,
    on_progress: Callable[[int], None] = lambda _n: None,
    profile_to: Path | None = None,
) -> RunResult:
    """Run `spec` until its sink holds n new records (or it fails) and measure it."""
    watch = OutputWatch(settings, spec.sink)
    procs = spec.start()
    sampler = TreeSampler([p.pid for p in procs])
    sampler.start()
    profiler = Profiler(profile_to) if profile_to is not None else None
    try:

        def progress(count: int) -> None:
            if profiler is not None and count > 0 and not profiler.running:
                profiler.start(procs[0].pid)  # once records flow: the profile shows the hot path only
            on_progress(count)

        done = watch.wait(
            n, timeout_s, alive=lambda: all(p.poll() is None for p in procs), on_progress=progress
        )
    finally:
        if profiler is not None:
            profiler.stop()
        sampler.stop()
        stop_all(procs)
    try:
        records = watch.read(values=True)
    finally:
        watch.close()
    result = RunResult(spec.name, outputs=len(records), peak_rss_mb=round(sampler.peak_rss_bytes / 2**20, 1))
    if not done:
        codes = [p.returncode for p in procs]
        result.error = f"{len(records)} of {n} actions after {timeout_s:.0f}s (exit codes {codes})"
        return result
    window = processing_window(records)
    if window is None:
        result.error = "no decision times in the actions"
        return result
    start, end = window
    result.window_s = round(end - start, 3)
    result.eps = round(len(records) / (end - start), 1)
    cpu = sampler.cpu_at(end) - sampler.cpu_at(start)
    result.cpu_s_per_1k = round(cpu / (len(records) / 1000.0), 4)
    return result
