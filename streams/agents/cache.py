"""A decoded write-back cache in front of a partitioned RocksDB table.

Reading RocksDB and decoding JSON for every event costs more than the decision itself. Entities
are hot (the same account transacts again, its pending decisions are joined minutes later), so the
decoded objects stay here; each batch writes the keys it changed through to the table (RocksDB +
changelog) before its offsets are acked. Everything is dropped when partitions are revoked: the
next owner of a partition may change its keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import faust
from faust.types import EventT

from streams.agents.outbox import Outbox, bind

V = TypeVar("V")


class TableCache(Generic[V]):
    def __init__(
        self,
        table: faust.Table,
        decode: Callable[[bytes | None], V],
        encode: Callable[[V], bytes],
        max_entries: int = 200_000,
    ) -> None:
        self.table = table
        self.decode = decode
        self.encode = encode
        self.max_entries = max_entries
        self.values: dict[bytes, V] = {}
        self.dirty: dict[bytes, EventT] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes, event: EventT) -> V:
        """The value for key; `event` must be from the partition that owns the key."""
        value = self.values.get(key)
        if value is not None:
            self.hits += 1
            return value
        self.misses += 1
        bind(event)
        value = self.decode(self.table.data._get(key))  # the raw bytes, no Faust codec round trip
        self.values[key] = value
        return value

    def put(self, key: bytes, value: V, event: EventT) -> None:
        self.values[key] = value
        self.dirty[key] = event

    def write_through(self, out: Outbox) -> None:
        """Write every changed key once (its latest value) to the table and its changelog."""
        table, encode, values = self.table, self.encode, self.values
        for key, event in self.dirty.items():
            out.write(table, key, encode(values[key]), event)
        self.dirty.clear()
        if len(values) > self.max_entries:
            values.clear()

    def forget(self, key: bytes) -> None:
        """Drop a key deleted from the table behind this cache."""
        self.values.pop(key, None)

    def clear(self) -> None:
        self.values.clear()
        self.dirty.clear()


def register_invalidation(app: faust.App, *caches: Any) -> None:
    """Drop cached values when partitions are revoked (another worker may own them next)."""

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        for cache in caches:
            cache.clear()
