"""Which partition a key lands in: murmur2, as Java clients, aiokafka (Faust) and our publishers use."""

from __future__ import annotations

from aiokafka.partitioner import murmur2

_hashes: dict[bytes, int] = {}


def partition_for(key: bytes, partitions: int) -> int:
    """aiokafka's murmur2 is pure Python (~2.5 us); entity keys repeat, so their hashes are kept."""
    hashed = _hashes.get(key)
    if hashed is None:
        if len(_hashes) > 1_000_000:
            _hashes.clear()
        hashed = _hashes[key] = murmur2(key) & 0x7FFFFFFF
    return hashed % partitions
