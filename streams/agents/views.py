"""Mapping views over the byte-valued GlobalTables, as the pure core wants to see them."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import orjson
from faust.types import EventT

from streams.agents.outbox import Outbox
from streams.core.table import Row


class PartitionSlice(MutableMapping[str, Any]):
    """The entries one partition owns: key "<k>|<p>". One writer per partition, no lost updates.

    Writes go through the batch's outbox, bound to `event` (a record of that partition), so their
    changelog record goes to that partition too.
    """

    def __init__(self, table: Any, event: EventT, out: Outbox) -> None:
        self.table = table
        self.event = event
        self.out = out
        self.suffix = f"|{event.message.partition}"

    def __getitem__(self, key: str) -> Any:
        raw = memory_dict(self.table).get((key + self.suffix).encode())
        if raw is None:
            raise KeyError(key)
        return orjson.loads(raw)

    def __setitem__(self, key: str, value: Any) -> None:
        self.out.write(self.table, (key + self.suffix).encode(), orjson.dumps(value), self.event)

    def __delitem__(self, key: str) -> None:
        raise TypeError("entries of a partition slice are never deleted")

    def __iter__(self) -> Iterator[str]:
        raise TypeError("a partition slice is not iterable")

    def __len__(self) -> int:
        raise TypeError("a partition slice has no length")


def memory_dict(table: Any) -> dict[bytes, bytes]:
    """The dict behind a GlobalTable on the memory store: reads without Faust's codec layers."""
    return table.data.data


class PartitionSum:
    """Read-only: an entry summed element-wise over every partition's slice."""

    def __init__(self, table: Any, partitions: int) -> None:
        self.table = table
        self.keys = [f"|{p}" for p in range(partitions)]

    def get(self, key: str, default: Any = None) -> Any:
        total: list[int] | None = None
        data = memory_dict(self.table)
        for suffix in self.keys:
            raw = data.get((key + suffix).encode())
            if raw is None:
                continue
            entry = orjson.loads(raw)
            total = entry if total is None else [a + b for a, b in zip(total, entry, strict=True)]
        return default if total is None else total

    def __getitem__(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value


class RowCache:
    """Decoded decision-table rows, re-decoded only when the table's bytes for a key change."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self._rows: dict[str, tuple[bytes, Row]] = {}

    def get(self, state_key: str) -> Row | None:
        raw = memory_dict(self.table).get(state_key.encode())
        if raw is None:
            return None
        cached = self._rows.get(state_key)
        if cached is not None and (cached[0] is raw or cached[0] == raw):
            return cached[1]
        row = Row.from_dict(orjson.loads(raw))
        self._rows[state_key] = (raw, row)
        return row
