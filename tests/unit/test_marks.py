"""When the learner forgets a mark (streams/agents/marks.py), on a real RocksDB database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from rocksdict import Options, Rdict

from streams.agents.marks import MarkClock, MarkSweep

TTL = 60.0


def clock_at(watermark: float) -> MarkClock:
    clock = MarkClock(TTL, started_s=1_000.0)
    clock.observe(watermark)
    return clock


def test_a_mark_is_forgotten_only_when_old_by_both_clocks() -> None:
    clock = clock_at(5_000.0)
    mark = clock.mark("learning:0", 7, "row", now=2_000.0)
    assert mark == ["learning:0", 7, "row", 5_000.0, 2_000.0]
    clock.observe(5_000.0 + TTL + 1)
    assert not clock.expired(mark, now=2_000.0 + TTL - 1)  # event time moved on, wall time did not
    assert clock.expired(mark, now=2_000.0 + TTL + 1)
    fresh = clock_at(5_000.0)
    assert not fresh.expired(mark, now=2_000.0 + 10 * TTL)  # wall time moved on, event time did not


def test_the_watermark_never_goes_back_and_a_mark_of_a_newer_watermark_stays() -> None:
    clock = clock_at(5_000.0)
    clock.observe(4_000.0)
    assert clock.watermark == 5_000.0
    assert not clock.expired(["learning:0", 1, "row", 5_100.0, 0.0], now=10_000.0)


def test_a_mark_without_times_counts_from_the_first_transition_seen() -> None:
    clock = clock_at(5_000.0)
    legacy = ["learning:0", 7, "row"]
    assert not clock.expired(legacy, now=1_000.0 + 2 * TTL)
    clock.observe(5_000.0 + 2 * TTL)
    assert clock.expired(legacy, now=1_000.0 + 2 * TTL)
    assert not MarkClock(TTL).expired(legacy, now=1e12)  # no transition seen: no watermark yet


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Rdict]:
    store = Rdict(str(tmp_path / "learned"), Options(raw_mode=True))
    yield store
    store.close()


def test_the_sweep_goes_round_the_keys_a_slice_at_a_time(db: Rdict) -> None:
    clock = clock_at(10_000.0)
    old = {f"D{i:02}".encode() for i in range(0, 20, 2)}
    for i in range(20):
        key = f"D{i:02}".encode()
        watermark = 1_000.0 if key in old else 10_000.0
        db[key] = orjson.dumps(["learning:0", i, "row", watermark, 0.0])
    db[b"__faust\0offset__"] = b"123"  # Faust's own key in every database (after "D...": skipped)
    sweep = MarkSweep(clock)
    found: list[bytes] = []
    for _ in range(5):  # slices of 6 of the 21 keys: the 4th stops at the end
        found += sweep.sweep(db, 0, 6, now=TTL + 1)
    assert found[:10] == sorted(old)
    assert found[10:] == [b"D00", b"D02", b"D04"]
    assert sweep.cursors[0] == b"D06"


def test_the_sweep_continues_after_keys_it_was_to_look_at_next_are_gone(db: Rdict) -> None:
    clock = clock_at(10_000.0)
    for i in range(6):
        db[f"d{i}".encode()] = orjson.dumps(["learning:0", i, "row", 1_000.0, 0.0])
    sweep = MarkSweep(clock)
    assert sweep.sweep(db, 3, 2, now=TTL + 1) == [b"d0", b"d1"]
    del db[b"d2"]
    assert sweep.sweep(db, 3, 2, now=TTL + 1) == [b"d3", b"d4"]
    assert sweep.sweep(db, 3, 5, now=TTL + 1) == [b"d5"]  # the end: from the start next time
    assert sweep.cursors[3] is None
