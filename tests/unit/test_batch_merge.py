"""The batches queued behind the one an agent takes are handled with it (streams/agents/batch.py)."""

from __future__ import annotations

import asyncio

from streams.agents.batch import take_waiting


def queue_of(*batches: list[int]) -> asyncio.Queue:
    q: asyncio.Queue = asyncio.Queue()
    for batch in batches:
        q.put_nowait(batch)
    return q


def test_the_queued_batches_join_the_one_taken_in_order() -> None:
    waiting = queue_of([3, 4], [5])
    assert take_waiting(list, [1, 2], waiting, limit=100) == [1, 2, 3, 4, 5]
    assert waiting.empty()


def test_no_more_is_taken_once_the_batch_reaches_the_limit() -> None:
    waiting = queue_of([3, 4], [5, 6], [7])
    assert take_waiting(list, [1, 2], waiting, limit=4) == [1, 2, 3, 4]
    assert waiting.get_nowait() == [5, 6]


def test_each_batch_is_taken_on_its_own_terms() -> None:
    """`take` may drop a whole batch (fetched before a rebalance) or some of its records."""
    waiting = queue_of([10, 11], [12])
    taken = take_waiting(lambda b: [m for m in b if m % 2 == 0], [9], waiting, limit=100)
    assert taken == [10, 12]
