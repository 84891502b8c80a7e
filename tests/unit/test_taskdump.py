"""The task dump follows a task's await chain down to the future it waits on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from streams.taskdump import dump_tasks


async def _inner(event: asyncio.Event) -> None:
    await event.wait()


async def _outer(event: asyncio.Event) -> None:
    await _inner(event)


def dump_of(name: str, waiting: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> str:
    """The dump's lines for a task named `name` running `waiting`, taken while it waits."""

    async def main() -> str:
        event = asyncio.Event()
        task = asyncio.create_task(waiting(event), name=name)
        await asyncio.sleep(0)
        dump = dump_tasks()
        event.set()
        await task
        return dump

    return asyncio.run(main()).split(f"task {name}:")[1].split("task ")[0]


def test_the_dump_names_the_innermost_await_of_a_waiting_task() -> None:
    stuck = dump_of("stuck", _outer)
    assert "in _outer" in stuck and "in _inner" in stuck and "in wait" in stuck


class _Actor:
    """Awaits a coroutine through its `__await__` wrapper, as Faust's agent actors do."""

    def __init__(self, coro: object) -> None:
        self.coro = coro

    def __await__(self):  # type: ignore[no-untyped-def]
        return self.coro.__await__()  # type: ignore[attr-defined]


async def _through_actor(event: asyncio.Event) -> None:
    await _Actor(_outer(event))


def test_the_dump_follows_an_agent_awaited_through_a_wrapper() -> None:
    actor = dump_of("actor", _through_actor)
    assert "in _through_actor" in actor and "in _inner" in actor and "in wait" in actor
