"""Commits: one asked for while another runs is made after it, not dropped (Faust's default); a
revocation's commits every lane partition handled, not only those acked since Faust forgot them."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import MethodType, SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from streams.agents.fastlane import (
    _make_filter_tps_with_pending_acks,
    _make_new_offset,
    _wait_then_commit_too,
)
from streams.agents.progress import LaneProgress

EVENTS0, EVENTS1, FEEDBACK0 = TP("risk.events", 0), TP("risk.events", 1), TP("risk.feedback", 0)


def test_a_commit_asked_during_another_waits_for_it_and_then_commits() -> None:
    async def main() -> list[str]:
        consumer = SimpleNamespace(_commit_fut=None)
        steps: list[str] = []

        async def commit(name: str) -> None:  # Faust's Consumer.commit, reduced to its guard
            if await _wait_then_commit_too(consumer):
                steps.append(f"{name} skipped")
                return
            consumer._commit_fut = asyncio.get_running_loop().create_future()
            steps.append(f"{name} commits")
            await asyncio.sleep(0.01)
            fut, consumer._commit_fut = consumer._commit_fut, None
            fut.set_result(None)

        await asyncio.gather(commit("periodic"), commit("final"), commit("revocation"))
        return steps

    assert asyncio.run(main()) == ["periodic commits", "final commits", "revocation commits"]


def test_a_cancelled_commit_does_not_hold_the_next_one() -> None:
    async def main() -> bool:
        running = asyncio.get_running_loop().create_future()
        running.cancel()
        return await _wait_then_commit_too(SimpleNamespace(_commit_fut=running))

    assert asyncio.run(main()) is False


def _revoked_consumer(generation: int) -> SimpleNamespace:
    """A consumer whose lane partitions were handled and acked, then revoked: Faust's revocation drops
    their `_acked` and `_committed_offset` entries before its final commit."""
    consumer = SimpleNamespace(
        _acked=defaultdict(list),
        _acked_index=defaultdict(set),
        _committed_offset=defaultdict(lambda: None),
        _gap=defaultdict(IntervalTree),
        _lane_progress=LaneProgress(),
        app=SimpleNamespace(consumer_generation_id=generation, in_transaction=False),
    )
    lanes = {EVENTS0.topic: None}
    faust_filter = MethodType(Consumer._filter_tps_with_pending_acks, consumer)
    consumer._filter_tps_with_pending_acks = MethodType(
        _make_filter_tps_with_pending_acks(lanes, faust_filter), consumer
    )
    consumer._new_offset = MethodType(
        _make_new_offset(lanes, MethodType(Consumer._new_offset, consumer)), consumer
    )
    consumer._should_commit = MethodType(Consumer._should_commit, consumer)
    consumer._lane_progress.seeked(2, {EVENTS0: 100, EVENTS1: 200})
    consumer._lane_progress.handled(2, EVENTS0, range(100, 150))
    consumer._lane_progress.handled(2, EVENTS1, range(200, 260))
    for tp in (EVENTS0, EVENTS1, FEEDBACK0):
        consumer._acked.pop(tp, None)
        consumer._committed_offset.pop(tp, None)
    return consumer


def commit_offsets(consumer: SimpleNamespace, topics: Any = None) -> dict[TP, int]:
    """What Faust's `force_commit` would commit."""
    tps = list(consumer._filter_tps_with_pending_acks(topics))
    return Consumer._filter_committable_offsets(consumer, tps)  # type: ignore[arg-type]


def test_a_revocation_commits_every_lane_partition_handled_not_only_those_acked_again() -> None:
    consumer = _revoked_consumer(generation=2)
    assert commit_offsets(consumer) == {EVENTS0: 150, EVENTS1: 260}
    assert commit_offsets(consumer, {EVENTS1}) == {EVENTS1: 260}
    consumer._committed_offset.update({EVENTS0: 150, EVENTS1: 260})
    assert commit_offsets(consumer) == {}  # committed: not again


def test_a_new_generation_commits_nothing_before_its_start_is_known() -> None:
    assert commit_offsets(_revoked_consumer(generation=3)) == {}
