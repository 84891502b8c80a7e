"""The scenario's side statistics learned from outcomes (risk: fraud counts per terminal), kept the
way the live pipeline keeps them: one slice per partition, read as the element-wise sum.

The live `outcome_stats` table stores "<key>|<partition>" entries, each with one writer, and the
decide path reads their sum. The per-slice rules (risk halves a terminal's counts past 200 labels)
then act per partition, so a replay that kept one global entry would drift from live decisions.
Here the slices are plain lists and the sum is moved by the difference on every write, so a read
is one dict lookup: the decide path reads it on every event.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any


class PartitionedStats:
    """Read side: `get(key)` is the sum over partitions (what the scenario's observe reads)."""

    __slots__ = ("_slices", "_totals", "_views", "partitions")

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._slices: dict[tuple[str, int], list[Any]] = {}
        self._totals: dict[str, list[Any]] = {}
        self._views = [StatsSlice(self, p) for p in range(partitions)]

    def get(self, key: str, default: Any = None, /) -> Any:
        return self._totals.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._totals[key]

    def slice(self, partition: int) -> StatsSlice:
        """The writable view of one partition (what the join agent's `record_outcome` gets)."""
        return self._views[partition]

    def _put(self, key: str, partition: int, value: list[Any]) -> None:
        """Store a slice's entry and move the sum by the difference (one lookup, no re-summing)."""
        old = self._slices.get((key, partition))
        self._slices[key, partition] = value
        total = self._totals.get(key)
        if total is None:
            self._totals[key] = list(value)
        elif old is None:
            self._totals[key] = [t + v for t, v in zip(total, value, strict=True)]
        else:
            self._totals[key] = [t - o + v for t, o, v in zip(total, old, value, strict=True)]

    def _delete(self, key: str, partition: int) -> None:
        old = self._slices.pop((key, partition))
        total = [t - o for t, o in zip(self._totals[key], old, strict=True)]
        if any((key, p) in self._slices for p in range(self.partitions)):
            self._totals[key] = total
        else:
            del self._totals[key]


class StatsSlice(MutableMapping[str, Any]):
    """One partition's entries, as a mapping: the live `PartitionSlice` over plain lists."""

    __slots__ = ("_owner", "_partition")

    def __init__(self, owner: PartitionedStats, partition: int) -> None:
        self._owner = owner
        self._partition = partition

    def __getitem__(self, key: str) -> Any:
        return self._owner._slices[key, self._partition]

    def get(self, key: str, default: Any = None) -> Any:
        return self._owner._slices.get((key, self._partition), default)

    def __setitem__(self, key: str, value: Any) -> None:
        self._owner._put(key, self._partition, list(value))

    def __delitem__(self, key: str) -> None:
        self._owner._delete(key, self._partition)

    def __iter__(self) -> Iterator[str]:
        raise TypeError("a partition slice is not iterable")

    def __len__(self) -> int:
        raise TypeError("a partition slice has no length")
