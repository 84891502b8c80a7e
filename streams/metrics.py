"""Per-worker counters, written periodically to a JSON file so the CLI and tests can read them.

Counts that can be recomputed from topics (actions, learning records) are recomputed there; these
are the ones only the worker sees: DLQ reasons, unmatched and duplicate feedback, expiries.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from streams.gcpolicy import GcStats, process_stats


@dataclass
class Metrics:
    counts: Counter[str] = field(default_factory=Counter)
    dlq_reasons: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.time)
    ready: bool = False  # partitions assigned, tables recovered: records are being processed
    # partition -> what was handled twice there: which offsets, from which committed start, and
    # whether the partition was this worker's before the rebalance (its own records) or came from
    # another worker (that worker's uncommitted tail)
    redeliveries: dict[str, dict[str, int | bool | None]] = field(default_factory=dict)
    gc: GcStats = field(default_factory=process_stats)
    memory: dict[str, int] = field(default_factory=dict)  # reporting.memory

    def inc(self, name: str, by: int = 1) -> None:
        self.counts[name] += by

    def redelivered(self, partition: int, offset: int, started: int | None, own: bool) -> None:
        self.counts["redelivered"] += 1
        span = self.redeliveries.get(str(partition))
        if span is None:
            self.redeliveries[str(partition)] = {
                "first": offset, "last": offset, "n": 1, "started": started, "own": own
            }  # fmt: skip
        else:
            span["first"] = min(offset, span["first"])  # type: ignore[type-var]
            span["last"] = max(offset, span["last"])  # type: ignore[type-var]
            span["n"] += 1  # type: ignore[operator]

    def dead_letter(self, reason: str) -> None:
        self.counts["dlq"] += 1
        # group reasons by their first clause so the table stays readable
        self.dlq_reasons[reason.split(":", 1)[0][:80]] += 1

    def snapshot(self) -> dict[str, object]:
        return {
            "pid": os.getpid(),
            "ready": self.ready,
            "uptime_s": round(time.time() - self.started, 3),
            "counts": dict(self.counts),
            "dlq_reasons": dict(self.dlq_reasons),
            "redeliveries": self.redeliveries,
            "gc": self.gc.snapshot(),
            "memory": self.memory,
        }

    def write(self, path: Path) -> None:
        """Atomic write: readers never see a half-written file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self.snapshot()))
        tmp.replace(path)


def read_snapshots(directory: Path) -> list[dict[str, object]]:
    """The latest snapshot of every worker that wrote into `directory`."""
    out = []
    for path in sorted(directory.glob("metrics-*.json")):
        try:
            out.append(orjson.loads(path.read_bytes()))
        except (OSError, orjson.JSONDecodeError):
            continue
    return out


def read_all(directory: Path) -> dict[str, int]:
    """Sum the counters of every worker that wrote into `directory`."""
    return sum_counts(read_snapshots(directory))


def sum_counts(snapshots: list[dict[str, object]]) -> dict[str, int]:
    """The counters of these workers' snapshots, summed."""
    total: Counter[str] = Counter()
    for snap in snapshots:
        total.update(snap.get("counts", {}))  # type: ignore[arg-type]
    return dict(total)
