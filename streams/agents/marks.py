"""When the learner may forget that it applied a decision.

A mark (decision id -> where it was applied, see learn.py) exists to recognise a transition sent
again: a batch handled again after a crash re-sends its transitions soon after the first time.
Kept forever, the `learned` table grows by a mark per decision (~60 bytes, on disk and in its
compacted changelog). A mark is forgotten once it is older than `ttl_s` by BOTH clocks: wall-clock
time (event time races ahead in a backfill) and the learner's event-time watermark (wall-clock
time races ahead while every worker is down, and the repeats of a batch left uncommitted by the
crash come when processing resumes).

Decision ids are hashes, so key order is no time order: each partition's database is swept a slice
per batch, a cursor going round its keys, in proportion to the marks written. The table then holds
the marks of about one ttl, plus those the cursor has not reached again yet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

FAUST_OFFSET_KEY = b"__faust\0offset__"  # Faust keeps the changelog offset it holds in each database
# A mark: [learning "topic:partition", offset, state key, watermark, wall-clock time when applied].
Mark = list[Any]


@dataclass
class MarkClock:
    """The two clocks a mark's age is measured by."""

    ttl_s: float
    watermark: float | None = None  # the newest event time of a transition seen by this process
    started_s: float = field(default_factory=time.time)
    started_watermark: float | None = None

    def observe(self, event_ts: float) -> None:
        if self.watermark is None:
            self.started_watermark = self.watermark = event_ts
        elif event_ts > self.watermark:
            self.watermark = event_ts

    def mark(self, source: str, offset: int, state_key: str, now: float) -> Mark:
        return [source, offset, state_key, self.watermark, now]

    def expired(self, mark: Mark, now: float) -> bool:
        """Older than the ttl by both clocks. A mark written before marks carried their times counts
        as made when this process saw its first transition."""
        watermark, made = (mark[3], mark[4]) if len(mark) >= 5 else (self.started_watermark, self.started_s)
        if self.watermark is None or watermark is None:
            return False
        return now - made > self.ttl_s and self.watermark - watermark > self.ttl_s


@dataclass
class MarkSweep:
    """A cursor per partition going round the keys of that partition's database."""

    clock: MarkClock
    cursors: dict[int, bytes | None] = field(default_factory=dict)

    def sweep(self, db: Any, partition: int, budget: int, now: float) -> list[bytes]:
        """The expired marks among the next `budget` keys of `db` (a rocksdict Rdict, raw mode)."""
        it = db.iter()
        cursor = self.cursors.get(partition)
        if cursor is None:
            it.seek_to_first()
        else:
            it.seek(cursor)
        expired: list[bytes] = []
        for _ in range(budget):
            if not it.valid():
                break
            key = it.key()
            if key != FAUST_OFFSET_KEY and self.clock.expired(orjson.loads(it.value()), now):
                expired.append(key)
            it.next()
        self.cursors[partition] = it.key() if it.valid() else None  # None: from the start next time
        return expired
