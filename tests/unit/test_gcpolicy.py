"""The worker's garbage-collector policy and its counters."""

from __future__ import annotations

import gc

from streams.gcpolicy import process_stats, settle
from streams.metrics import Metrics


def test_collections_are_counted_per_generation_in_the_metrics() -> None:
    stats = process_stats()
    assert process_stats() is stats and gc.callbacks.count(stats._on_gc) == 1
    before = list(stats.collections)
    gc.collect(0)
    gc.collect()
    assert stats.collections[0] == before[0] + 1 and stats.collections[2] == before[2] + 1
    snapshot = Metrics().snapshot()["gc"]
    assert snapshot["collections"] == stats.collections and snapshot["ms"][2] > 0.0  # type: ignore[index]


def test_settle_freezes_the_start_up_heap_and_raises_the_young_threshold() -> None:
    threshold = gc.get_threshold()
    try:
        settle(0)
        assert gc.get_threshold() == threshold and gc.get_freeze_count() == 0
        settle(50_000)
        assert gc.get_threshold() == (50_000, *threshold[1:]) and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
