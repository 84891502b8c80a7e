"""How far each lane partition is handled: what may be committed, and what a re-fetch may skip.

Faust's own bookkeeping (`_acked`, `_committed_offset`) fails the lanes in three measured ways: a
revocation drops both before Faust's last commit, so acks that land afterwards were committed from
an unknown base (records fetched from a stale position before the generation's seek were then
committed over: 1,000 events lost); a committed offset of 0 is stored as "unknown"; and a fetch made
before Faust's end-of-recovery seek is read twice. Here, per consumer generation and partition:
`base` is the offset after the contiguous run of handled records starting at the group's committed
offset (known once the generation's seek ran); handled records beyond a hole wait in `ahead` until
the hole is filled (or known to be a gap: transaction markers, compaction). Only `base` is ever
committed, so a commit never passes a record that was not handled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from faust.types import TP


class LaneProgress:
    """Handled offsets of the lanes' partitions in the current consumer generation."""

    def __init__(self) -> None:
        self.generation: int | None = None
        self.base: dict[TP, int] = {}
        self.ahead: dict[TP, set[int]] = {}
        # For the redelivery diagnostics: where the generation started each partition, and which
        # partitions the last generation that handled any had (its own before the rebalance).
        self.started: dict[TP, int] = {}
        self.before: frozenset[TP] = frozenset()

    def origin(self, tp: TP) -> tuple[int | None, bool]:
        """The committed offset this generation started `tp` from, and whether `tp` was this
        worker's before the rebalance."""
        return self.started.get(tp), tp in self.before

    def _for(self, generation: int) -> bool:
        """Start afresh when the generation changes: another worker may have committed meanwhile."""
        if generation != self.generation:
            if self.generation is not None and generation < self.generation:
                return False  # a batch of an older generation says nothing about this one
            if self.base:
                self.before = frozenset(self.base)
            self.generation, self.base, self.ahead, self.started = generation, {}, {}, {}
        return True

    def seeked(self, generation: int, committed: Mapping[TP, int]) -> None:
        """The generation's partitions were positioned at these committed offsets."""
        if self._for(generation):
            for tp, offset in committed.items():
                self.started.setdefault(tp, offset)
                self.base[tp] = max(offset, self.base.get(tp, offset))
                self._advance(tp, None)

    def is_handled(self, generation: int, tp: TP, offset: int) -> bool:
        if generation != self.generation:
            return False
        base = self.base.get(tp)
        return (base is not None and offset < base) or offset in self.ahead.get(tp, ())

    def handled(self, generation: int, tp: TP, offsets: Iterable[int], gaps: Any = None) -> None:
        """Records acked (their output is durable); `gaps`: Faust's interval tree of offsets that hold no
        record for the consumer (markers, compacted)."""
        if self._for(generation):
            self.ahead.setdefault(tp, set()).update(offsets)
            self._advance(tp, gaps)

    def committed(self, generation: int, tp: TP, offset: int) -> None:
        """Everything before `offset` is committed (exactly-once: with the batch's transaction)."""
        if self._for(generation):
            self.base[tp] = max(offset, self.base.get(tp, offset))
            self._advance(tp, None)

    def position(self, generation: int, tp: TP) -> int | None:
        """The offset to commit: None while the committed offset of this generation is unknown."""
        return self.base.get(tp) if generation == self.generation else None

    def _advance(self, tp: TP, gaps: Any) -> None:
        base = self.base.get(tp)
        if base is None:
            return
        ahead = self.ahead.get(tp)
        if ahead:
            for offset in [o for o in ahead if o < base]:
                ahead.discard(offset)
        while ahead:
            if base in ahead:
                ahead.discard(base)
                base += 1
            elif gaps and gaps[base]:
                base = max(interval.end for interval in gaps[base])
            else:
                break
        self.base[tp] = base
