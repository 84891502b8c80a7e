"""A commit asked for while another runs is made after it, not dropped (Faust's default)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from streams.agents.fastlane import _wait_then_commit_too


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
