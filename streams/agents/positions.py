"""Which fetched lane records may be handled: only those fetched after their partition was last
positioned, in a consumer generation whose tables are recovered.

Faust opens the consumer's flow during recovery (to read the changelogs), so lane records arrive
before the tables hold what they must see; and it seeks the partitions to their committed offsets
when recovery ends, so records fetched before that come again. Handling a batch from before the seek
reads incomplete state (a learner row without its last updates, an account without its earlier
events) and applies records out of order: an account state that skips offsets at or below the last
one applied then never applies the earlier ones. Such records are dropped; the seek fetches them
again. Seeks are counted; each batch carries the count from before its fetch began.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from faust.types import TP

NEVER = 1 << 62


class LanePositions:
    def __init__(self) -> None:
        self.seeks = 0
        self.positioned_at: dict[TP, int] = {}  # partition -> the seek count right after its last seek
        self.ready_generation: int | None = None  # tables recovered and partitions positioned
        self.completing: int | None = None  # the generation whose recovery is ending (its seek next)
        # Cleared while a seek of several partitions runs (aiokafka moves them one by one, awaiting
        # the broker in between, before `repositioned` is told): a fetch that ends meanwhile may hold
        # records from the new positions, yet counts as fetched before the seek.
        self.settled = asyncio.Event()
        self.settled.set()

    def repositioned(self, tps: Iterable[TP], generation: int) -> None:
        """`tps` were just seeked; the seek that ends a recovery makes the generation ready."""
        self.seeks += 1
        for tp in tps:
            self.positioned_at[tp] = self.seeks
        if self.completing == generation:
            self.ready_generation = generation

    def current(self, generation: int, tp: TP, fetched_after: int) -> bool:
        """Whether a record of `tp` fetched after `fetched_after` seeks may be handled."""
        return generation == self.ready_generation and fetched_after >= self.positioned_at.get(tp, NEVER)

    def moved_since(self, tps: Iterable[TP], seeks: int) -> list[TP]:
        """Of `tps`, those seeked after `seeks`: a fetch that began before may hold records from
        their old positions or from their new ones, which the seek will not fetch again."""
        return [tp for tp in tps if self.positioned_at.get(tp, 0) > seeks]
