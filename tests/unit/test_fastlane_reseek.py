"""A fetch that spans a seek: the records of the partitions the seek moved are dropped and those
partitions sought again to where their handling resumes; nothing empty reaches a lane."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streams.agents.fastlane import _reseek_moved
from streams.agents.positions import LanePositions
from streams.agents.progress import LaneProgress

EVENTS0, EVENTS1, FEEDBACK0 = TP("risk.events", 0), TP("risk.events", 1), TP("risk.feedback", 0)


class FakeConsumer:
    """The consumer attributes `_reseek_moved` reads, with seeks recorded instead of sent."""

    def __init__(self, generation: int) -> None:
        self.app = SimpleNamespace(consumer_generation_id=generation)
        self._lane_positions = LanePositions()
        self._lane_progress = LaneProgress()
        self.sought: dict[TP, int] = {}

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.sought.update(partitions)


def record(tp: TP, offset: int) -> Any:
    return SimpleNamespace(tp=tp, offset=offset)


def test_moved_partitions_are_dropped_sought_again_and_emptied_topics_removed() -> None:
    consumer = FakeConsumer(generation=2)
    consumer._lane_progress.seeked(2, {EVENTS0: 10, EVENTS1: 20, FEEDBACK0: 5})
    positions = consumer._lane_positions
    positions.completing = 2
    positions.repositioned([EVENTS0, EVENTS1, FEEDBACK0], generation=2)
    seeks = positions.seeks  # the fetch begins
    positions.repositioned([EVENTS1, FEEDBACK0], generation=2)  # a seek while it is drained
    batches = {
        "risk.events": [record(EVENTS0, 10), record(EVENTS1, 20), record(EVENTS0, 11)],
        "risk.feedback": [record(FEEDBACK0, 5)],
    }
    asyncio.run(_reseek_moved(consumer, batches, seeks))
    assert {t: [(m.tp.partition, m.offset) for m in ms] for t, ms in batches.items()} == {
        "risk.events": [(0, 10), (0, 11)]
    }
    assert consumer.sought == {EVENTS1: 20, FEEDBACK0: 5}
    assert positions.moved_since([EVENTS1, FEEDBACK0], seeks + 1) == [EVENTS1, FEEDBACK0]


class SeekingConsumer(FakeConsumer):
    """Records whether the lanes counted as settled while aiokafka's positions moved."""

    def __init__(self, generation: int, committed: dict[TP, int]) -> None:
        super().__init__(generation)
        self.committed = committed
        self._read_offset: dict[TP, int | None] = {}
        self._committed_offset: dict[TP, int | None] = {}
        self.settled_during_seek: bool | None = None

    async def seek_to_committed(self) -> dict[TP, int]:
        await asyncio.sleep(0)  # aiokafka awaits the coordinator between the partitions' seeks
        self.settled_during_seek = self._lane_positions.settled.is_set()
        return self.committed


def test_a_seek_to_the_committed_offsets_is_a_window_fetches_wait_out() -> None:
    from streams.agents.fastlane import _make_perform_seek

    consumer = SeekingConsumer(generation=3, committed={EVENTS0: 7, EVENTS1: 9})
    perform_seek = _make_perform_seek({"risk.events": None})  # type: ignore[dict-item]
    positions = consumer._lane_positions
    before = positions.seeks
    asyncio.run(perform_seek(consumer))
    assert consumer.settled_during_seek is False  # a fetch ending meanwhile waits, then is re-sought
    assert positions.settled.is_set() and positions.seeks == before + 1
    assert consumer._lane_progress.position(3, EVENTS1) == 9
