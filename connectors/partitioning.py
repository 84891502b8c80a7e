"""Which partition a key lands in: murmur2, as Java clients, aiokafka (Faust) and our publishers use."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions
