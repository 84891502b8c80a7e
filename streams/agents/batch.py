"""The batch loop every agent shares, and the rules that keep at-least-once true around Faust.

A batch's messages are acked only after its output is acknowledged by the broker, so:
- no exception may leave a record's handling: a record whose handling fails goes to the DLQ with
  the reason (bad input never crashes a worker, and nothing is acked without a trace);
- a batch whose output cannot be emitted must never be acked: the worker exits at once, without
  committing, and its records are redelivered to the next owner;
- a shutdown (cancellation) in the middle of emitting waits until the batch is handed to the
  producer, which Faust flushes before its final commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import faust
from faust.types import EventT, Message

from streams.agents import fastlane
from streams.agents.outbox import Outbox
from streams.core.scenario import InvalidEvent

if TYPE_CHECKING:
    from streams.app import Pipeline

log = logging.getLogger(__name__)
EXIT_EMIT_FAILED = 70


class Source:
    """A consumed record as the handlers see it: Faust reads `.message` off the current event."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, message: Message) -> None:
        self.message = message


class BatchAgent:
    """Subclasses implement `handle` for one record; `run` applies it to a batch."""

    writes_entity_tables = True  # the learner writes only its own table

    def __init__(self, p: Pipeline) -> None:
        self.p = p

    def handle(self, event: EventT, out: Outbox) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def finish(self, out: Outbox) -> None:
        """Called once per batch after every record was handled."""

    def run(self, messages: list[Message]) -> Outbox:
        p = self.p
        out = p.outbox()
        for message in messages:
            event = Source(message)
            try:
                self.handle(event, out)
            except InvalidEvent as exc:
                out.dead_letter(p.dlq, event, exc.reason, p.metrics)
            except Exception as exc:
                log.exception("internal error on %s[%s]@%s", event.message.topic, event.message.partition,
                              event.message.offset)  # fmt: skip
                p.metrics.inc("internal_errors")
                out.dead_letter(p.dlq, event, f"internal error: {exc!r}", p.metrics)
        self.finish(out)
        # Now, not in the emit task: another agent's batch may run before that task starts, and its
        # table changes must go out (and be acked) with its own batch.
        p.states.write_through(out)
        p.pendings.write_through(out)
        out.store_puts()
        return out


async def emit_or_die(p: Pipeline, out: Outbox, sources: list[Message]) -> None:
    task = asyncio.ensure_future(p.emit(out, sources))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task  # shutting down: hand the batch over first, then stop
        raise
    except BaseException as exc:
        log.critical("could not emit a batch (%r): exiting without committing its offsets", exc)
        logging.shutdown()
        os._exit(EXIT_EMIT_FAILED)


def take_waiting(
    take: Callable[[list[Message]], list[Message]], messages: list[Message], waiting: Any, limit: int
) -> list[Message]:
    """A batch and those queued behind it, as one batch of at most about `limit` records.

    A batch's emit waits for the broker's acknowledgements (three waves), and at low load each fetch
    is a batch of a few records: handled one by one, each queued batch waited for every emit before
    it (measured: half of a 200 ms event->action latency at 500 events/s was spent in the queue)."""
    batch = take(messages)
    while len(batch) < limit and not waiting.empty():
        batch += take(waiting.get_nowait())
    return batch


def register_batch_agent(p: Pipeline, topic: faust.TopicT, name: str, agent: BatchAgent) -> None:
    """A Faust agent that iterates batches of `topic`'s records (see fastlane.py)."""
    lane = p.app.channel(maxsize=4)
    fastlane.subscribe(p.app, topic)
    p.lanes[topic.get_topic_name()] = lane
    app = p.app
    # Two agents write the same keys (decide and join: an account's pending decisions). Their batches
    # run and send one at a time, so each key's changelog records are in the order its values were
    # made. Concurrent sends put them out of order (a join's transitions are acked before its table
    # wave goes out): the changelog's last value was then an older one, and the next owner of the
    # partition read a pending set without a decision made, or with a join undone (a label parked
    # for good).
    in_turn = p.entity_writes if agent.writes_entity_tables else contextlib.nullcontext()

    limit = 4 * p.settings.batch_size
    take = functools.partial(fastlane.take, app)

    counted = f"{name.rsplit('.', 1)[-1]}_"  # decide_batches, decide_records, decide_handle_us ...
    inc, clock = p.metrics.inc, time.perf_counter

    async def loop(stream: Any) -> None:
        waiting = stream.channel.queue  # the batches behind the one the stream yields
        async for messages in stream:
            messages = take_waiting(take, messages, waiting, limit)
            if not messages:
                continue
            began = clock()
            async with in_turn:
                turn = clock()
                out = agent.run(messages)
                handled = clock()
                await emit_or_die(p, out, messages)
            fastlane.ack_all(app, messages)
            inc(counted + "batches")
            inc(counted + "records", len(messages))
            inc(counted + "turn_wait_us", int((turn - began) * 1e6))
            inc(counted + "handle_us", int((handled - turn) * 1e6))
            inc(counted + "emit_us", int((clock() - handled) * 1e6))

    loop.__name__ = name.replace(".", "_")
    app.agent(lane, name=name)(loop)
