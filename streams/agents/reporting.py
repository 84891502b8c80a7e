"""Writes this worker's counters to `<metrics_path>/metrics-<pid>.json` every second."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from streams.allocator import trim

if TYPE_CHECKING:
    from streams.app import Pipeline


def register_reporting(p: Pipeline) -> None:
    path = p.settings.metrics_path / f"metrics-{os.getpid()}.json"

    @p.app.timer(interval=5.0)
    async def give_back_memory() -> None:
        trim()

    @p.app.timer(interval=1.0)
    async def report() -> None:
        app = p.app
        recovered = app.tables.recovery.completed.is_set() and not app.in_recovery
        p.metrics.ready = bool(recovered and app.consumer.assignment() and not app.rebalancing)
        p.metrics.memory = memory(p)
        p.metrics.write(path)

    @p.app.on_before_shutdown.connect
    def final_report(app: object, **kwargs: object) -> None:
        p.metrics.write(path)


# RocksDB's own memory, per kind, summed over the worker's databases (RocksDB property names).
ROCKSDB_MEMORY = {
    "memtables": "rocksdb.cur-size-all-mem-tables",
    "table_readers": "rocksdb.estimate-table-readers-mem",  # index and filter blocks
    "block_cache": "rocksdb.block-cache-usage",
}


def memory(p: Pipeline) -> dict[str, int]:
    """Where a worker's memory is, for the soak: Python's allocated blocks (pymalloc and larger) and
    RocksDB's memtables, table readers and block caches."""
    out, dbs = {"python_blocks": sys.getallocatedblocks()}, _databases(p)
    for kind, prop in ROCKSDB_MEMORY.items():
        out[f"rocksdb_{kind}"] = sum(_int_property(db, prop) for db in dbs)
    return out


def _databases(p: Pipeline) -> list[Any]:
    dbs = []
    for table in (p.entities, p.pending, p.learned):
        dbs.extend(getattr(table.data, "_dbs", {}).values())  # memory stores have none
    return dbs


def _int_property(db: Any, name: str) -> int:
    try:
        return int(db.property_int_value(name) or 0)
    except Exception:  # a database being closed at a rebalance
        return 0
