"""LanePositions: lane records are handled only if fetched after their partition's last seek, in a
generation whose tables are recovered."""

from __future__ import annotations

from faust.types import TP

from streams.agents.positions import LanePositions

TP0, TP1 = TP("risk.events", 0), TP("risk.events", 1)


def test_nothing_is_current_until_the_seek_that_ends_a_recovery() -> None:
    positions = LanePositions()
    positions.repositioned([TP0, TP1], generation=3)  # a seek while the flow is stopped (rebalance)
    assert not positions.current(3, TP0, positions.seeks)  # the tables are not recovered yet
    positions.completing = 3
    before = positions.seeks
    positions.repositioned([TP0, TP1], generation=3)
    assert positions.current(3, TP0, positions.seeks) and positions.current(3, TP1, positions.seeks)
    assert not positions.current(3, TP0, before)  # fetched before that seek: it comes again
    assert not positions.current(4, TP0, positions.seeks)  # the next generation waits for its own


def test_a_partition_sought_again_invalidates_only_its_own_earlier_fetches() -> None:
    positions = LanePositions()
    positions.completing = 1
    positions.repositioned([TP0, TP1], generation=1)
    fetched_after = positions.seeks
    positions.repositioned([TP1], generation=1)  # TP1 alone sought again (a fetch spanned a seek)
    assert positions.current(1, TP0, fetched_after) and not positions.current(1, TP1, fetched_after)
    assert positions.moved_since([TP0, TP1], fetched_after) == [TP1]
