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


@dataclass
class Metrics:
    counts: Counter[str] = field(default_factory=Counter)
    dlq_reasons: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.time)
    ready: bool = False  # partitions assigned, tables recovered: records are being processed

    def inc(self, name: str, by: int = 1) -> None:
        self.counts[name] += by

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
    total: Counter[str] = Counter()
    for snap in read_snapshots(directory):
        total.update(snap.get("counts", {}))  # type: ignore[arg-type]
    return dict(total)
