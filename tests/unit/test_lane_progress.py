"""LaneProgress: a commit position never passes a record that was not handled."""

from __future__ import annotations

from faust.types import TP
from intervaltree import IntervalTree

from streams.agents.progress import LaneProgress
from streams.metrics import Metrics

TP0 = TP("risk.events", 0)


def test_nothing_is_committed_before_the_generation_start_is_known() -> None:
    lane = LaneProgress()
    lane.handled(1, TP0, range(100, 200))  # fetched from a stale position before the seek
    assert lane.position(1, TP0) is None
    lane.seeked(1, {TP0: 50})
    assert lane.position(1, TP0) == 50  # 50..99 were never handled: the run waits for them
    lane.handled(1, TP0, range(50, 100))
    assert lane.position(1, TP0) == 200


def test_a_hole_stops_the_position_until_it_is_filled() -> None:
    lane = LaneProgress()
    lane.seeked(3, {TP0: 0})  # a committed offset of 0 is a known start, not "unknown"
    lane.handled(3, TP0, range(0, 10))
    lane.handled(3, TP0, range(20, 30))
    assert lane.position(3, TP0) == 10
    assert lane.is_handled(3, TP0, 25) and not lane.is_handled(3, TP0, 15)
    lane.handled(3, TP0, range(10, 20))
    assert lane.position(3, TP0) == 30


def test_known_gaps_are_stepped_over() -> None:
    lane = LaneProgress()
    lane.seeked(1, {TP0: 0})
    gaps = IntervalTree()
    gaps[10:12] = True  # a commit marker and an aborted record
    lane.handled(1, TP0, range(0, 10), gaps)
    lane.handled(1, TP0, range(12, 15), gaps)
    assert lane.position(1, TP0) == 15


def test_a_new_generation_forgets_and_an_old_batch_changes_nothing() -> None:
    lane = LaneProgress()
    lane.seeked(1, {TP0: 0})
    lane.handled(1, TP0, range(0, 10))
    lane.handled(2, TP0, range(10, 20))  # a new generation: its start is not known yet
    assert lane.position(2, TP0) is None and lane.position(1, TP0) is None
    assert not lane.is_handled(2, TP0, 5)
    lane.handled(1, TP0, range(20, 30))  # a batch taken before the rebalance, acked after it
    lane.seeked(2, {TP0: 10})
    assert lane.position(2, TP0) == 20


def test_exactly_once_commits_move_the_position_directly() -> None:
    lane = LaneProgress()
    lane.seeked(1, {TP0: 100})
    lane.committed(1, TP0, 150)
    assert lane.position(1, TP0) == 150 and lane.is_handled(1, TP0, 149)


def test_a_redelivery_is_traced_to_where_the_generation_started_and_whose_partition_it_was() -> None:
    lane, tp1 = LaneProgress(), TP("risk.events", 1)
    lane.seeked(1, {TP0: 0})
    lane.handled(1, TP0, range(0, 10))
    lane.seeked(2, {TP0: 5, tp1: 40})  # the other worker left: its partition comes over
    assert lane.origin(TP0) == (5, True) and lane.origin(tp1) == (40, False)
    metrics = Metrics()
    for offset in (7, 5, 6):
        metrics.redelivered(0, offset, *lane.origin(TP0))
    assert metrics.counts["redelivered"] == 3
    assert metrics.snapshot()["redeliveries"] == {
        "0": {"first": 5, "last": 7, "n": 3, "started": 5, "own": True}
    }
