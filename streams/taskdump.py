"""`kill -USR2 <worker pid>` logs where every asyncio task waits, through its whole await chain,
and the consumer's state of every assigned partition.

asyncio's own task stacks stop at a task's outer coroutine: an agent shows as "await coro" in
Faust's actor, not at the lock, queue or future it is stuck on. A stalled worker is diagnosed here by
following each coroutine's `cr_await` (and async generators' `ag_await`) down to the innermost frame.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

log = logging.getLogger(__name__)


def await_chain(awaitable: Any) -> list[str]:
    """'file:line in function' for each frame from `awaitable` down to what it waits on."""
    chain: list[str] = []
    while awaitable is not None:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "ag_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        inner = getattr(awaitable, "cr_await", None) or getattr(awaitable, "ag_await", None)
        if inner is None and frame is None:
            inner = _wrapped_coroutine(awaitable)
            if inner is None:
                chain.append(repr(awaitable)[:200])  # a future, or a C-level awaitable
        awaitable = inner
    return chain


def _wrapped_coroutine(awaitable: Any) -> Any:
    """The coroutine behind a `coroutine_wrapper` (what `coro.__await__()` returns: Faust awaits an
    agent's coroutine through one, so the agents' own frames were missing from the dumps)."""
    if type(awaitable).__name__ != "coroutine_wrapper":
        return None
    return next((ref for ref in gc.get_referents(awaitable) if asyncio.iscoroutine(ref)), None)


def dump_tasks() -> str:
    lines = []
    for task in asyncio.all_tasks():
        lines.append(f"task {task.get_name()}:")
        lines.extend(f"    {step}" for step in await_chain(task.get_coro()))
    return "\n".join(lines)


def log_state(app: Any) -> None:
    log.warning("asyncio tasks:\n%s", dump_tasks())
    for title, state in (("consumer partitions", consumer_state), ("producer", producer_state)):
        try:
            log.warning("%s:\n%s", title, state(app))
        except Exception as exc:  # a debugging aid must not take the worker down
            log.warning("%s: unavailable (%r)", title, exc)


def consumer_state(app: Any) -> str:
    """Per assigned partition: aiokafka's position, pause and fetch state, and Faust's view of it.
    A partition that stops delivering records shows here (paused, no position, stale read offset)."""
    consumer = app.consumer
    aio = consumer._thread._ensure_consumer()
    assignment = aio._subscription.subscription.assignment if aio._subscription.subscription else None
    if assignment is None:
        return "no assignment"
    buffered = set(getattr(aio._fetcher, "_records", {}))
    lines = []
    for tp in sorted(assignment.tps):
        state = assignment.state_value(tp)
        lines.append(
            f"{tp.topic}-{tp.partition}: position={state._position} status={state._status} "
            f"paused={state.paused} buffered={tp in buffered} "
            f"faust_active={tp in consumer._active_partitions} "
            f"faust_paused={tp in consumer._paused_partitions} "
            f"read_offset={consumer._read_offset.get(tp)} "
            f"committed={consumer._committed_offset.get(tp)}"
        )
    return "\n".join(lines)


def producer_state(app: Any) -> str:
    """aiokafka's sender sends one request per broker at a time and one batch per partition: an emit
    that never completes shows here as a batch waiting in the accumulator, a muted partition whose
    batch never came back, or a broker with a request in flight."""
    producer = app.producer._producer
    sender = producer._sender
    waiting = producer._message_accumulator._batches
    lines = [
        f"in flight to brokers: {sorted(sender._in_flight)}",
        f"muted partitions: {sorted(f'{tp.topic}-{tp.partition}' for tp in sender._muted_partitions)}",
    ]
    for tp, batches in sorted(waiting.items()):
        if batches:
            first = batches[0]
            lines.append(
                f"waiting {tp.topic}-{tp.partition}: {len(batches)} batch(es), first lingers "
                f"{first.remaining_linger() or 0.0:.3f}s more, expired={first.expired()}"
            )
    return "\n".join(lines)
