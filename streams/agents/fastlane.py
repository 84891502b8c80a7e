"""Batches for the agents, delivered below Faust's per-event path.

Faust hands every consumed record to its conductor one at a time: a `wait_first` (two tasks), an
Event, a queue put and get, stream processors and an ack, about 60 microseconds a record on this
machine, which caps a worker near 15,000 records/s whatever the agent does. Our agents work on
batches anyway, so the consumer's drain loop is replaced by one that, for the agents' input
topics, collects each fetch into lists of messages and puts each list into the agent's in-memory
channel as ONE item. Everything else stays Faust's: group membership and assignment,
co-partitioning, table recovery, flow control during rebalances, commits, and the agents
themselves (each iterates its channel as an ordinary Faust stream).

Bookkeeping that keeps at-least-once intact:
- each message is tracked as "unacked" when it is taken, so Faust's rebalance and shutdown wait
  (`wait_empty`) until the agent has emitted and acked it;
- the agent acks a batch's messages only after its output is acknowledged by the broker, and
  Faust commits only acked offsets;
- records of other topics (changelogs, Faust internals) take Faust's normal path unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import Iterator, Mapping
from typing import Any

import faust
from faust.types import TP, Message

from streams.agents.positions import LanePositions
from streams.agents.progress import LaneProgress

log = logging.getLogger(__name__)


def install(app: faust.App, lanes: Mapping[str, faust.ChannelT]) -> None:
    """Route the records of `lanes` (topic name -> channel of batches) around the conductor; their
    commit positions come from `LaneProgress` (progress.py), not from Faust's acked lists."""
    consumer: Any = app.consumer
    consumer._lane_progress = LaneProgress()
    consumer._lane_positions = LanePositions()
    consumer._drain_messages = types.MethodType(_make_drain(lanes), consumer)
    consumer._new_offset = types.MethodType(_make_new_offset(lanes, consumer._new_offset), consumer)
    consumer.perform_seek = types.MethodType(_make_perform_seek(lanes), consumer)
    consumer.maybe_wait_for_commit_to_finish = types.MethodType(_wait_then_commit_too, consumer)
    pending = _make_filter_tps_with_pending_acks(lanes, consumer._filter_tps_with_pending_acks)
    consumer._filter_tps_with_pending_acks = types.MethodType(pending, consumer)
    consumer._lane_committed = {}
    commit_offsets = _make_commit_offsets(lanes, consumer._commit_offsets)
    consumer._commit_offsets = types.MethodType(commit_offsets, consumer)
    consumer.commit_and_end_transactions = types.MethodType(
        _make_final_commit(lanes, consumer.commit_and_end_transactions), consumer
    )
    recovery: Any = app.tables.recovery
    recovery.on_recovery_completed = _make_on_recovery_completed(consumer, recovery.on_recovery_completed)


async def _wait_then_commit_too(self: Any) -> bool:
    """Faust's `commit()` asked while another commit runs waits for it and then commits nothing,
    though batches acked meanwhile are not in it. The final commits (a revocation's, a shutdown's)
    can be such a call, behind the periodic one, and those batches would be handled again by the
    next owner. Here the call waits for the running commit and then makes its own. (Suspected first
    of the SIGTERM test's redeliveries; their cause was the revocation's commit skipping partitions:
    see `_make_filter_tps_with_pending_acks`.)"""
    while (running := self._commit_fut) is not None:
        try:
            await running
        except asyncio.CancelledError:
            if not running.cancelled():
                raise  # this task was cancelled, not the commit it waited for
            break  # that commit was cancelled: make ours (as Faust does)
    return False


def _make_filter_tps_with_pending_acks(lanes: Mapping[str, faust.ChannelT], faust_filter: Any) -> Any:
    """The partitions a commit considers: Faust's (those with acks in `_acked`) and every lane
    partition handled in this generation. A revocation drops the revoked partitions from `_acked`
    before its final commit, which then skipped those not acked again meanwhile: their records
    handled since the last periodic commit stayed uncommitted and this worker, given them back,
    handled them again (measured: 269 events of the survivor's own two partitions after a SIGTERM
    of the other worker, its revocation's commit 114 and 155 records behind its handled runs)."""

    def _filter_tps_with_pending_acks(self: Any, topics: Any = None) -> Iterator[TP]:
        faust_tps = list(faust_filter(topics))
        yield from faust_tps
        lane: LaneProgress = self._lane_progress
        if lane.generation != self.app.consumer_generation_id:
            return
        seen = set(faust_tps)
        for tp in lane.base:
            if (
                tp.topic in lanes
                and tp not in seen
                and (topics is None or tp in topics or tp.topic in topics)
            ):
                yield tp

    return _filter_tps_with_pending_acks


def _make_commit_offsets(lanes: Mapping[str, faust.ChannelT], faust_commit_offsets: Any) -> Any:
    """Faust's offset commit, remembering what it committed for the lanes (Faust forgets its own
    record at a revocation): the final commits' log compares it with what was handled."""

    async def _commit_offsets(
        self: Any, offsets: Mapping[TP, int], start_new_transaction: bool = True
    ) -> Any:
        assignment = self.assignment()
        did_commit = await faust_commit_offsets(offsets, start_new_transaction=start_new_transaction)
        if did_commit:
            self._lane_committed.update(
                {tp: offset for tp, offset in offsets.items() if tp.topic in lanes and tp in assignment}
            )
        return did_commit

    return _commit_offsets


def _make_final_commit(lanes: Mapping[str, faust.ChannelT], faust_final_commit: Any) -> Any:
    """The commit that ends `wait_empty` (a revocation's, a shutdown's), logged per lane partition:
    handled records left uncommitted there are handled again by the next owner."""

    async def commit_and_end_transactions(self: Any) -> None:
        await faust_final_commit()
        lane: LaneProgress = self._lane_progress
        generation = self.app.consumer_generation_id
        if lane.generation != generation or self.app.in_transaction:
            return
        why = "shutdown" if self.app.should_stop else "revocation" if self.app.rebalancing else "commit"
        assignment = self.assignment()
        parts, behind = [], {}
        for tp in sorted(tp for tp in lane.base if tp.topic in lanes and tp in assignment):
            known = (self._lane_committed.get(tp), lane.started.get(tp))  # by us, or when it started
            handled, committed = lane.base[tp], max((o for o in known if o is not None), default=None)
            parts.append(f"{tp.topic}-{tp.partition} handled to {handled}, committed {committed}")
            if committed is None or committed < handled:
                behind[f"{tp.topic}-{tp.partition}"] = (committed, handled)
        log.info("final commit positions (%s, generation %s): %s", why, generation, "; ".join(parts))
        if behind:
            log.warning("final commit (%s) left handled records uncommitted (committed, handled): %s",
                        why, behind)  # fmt: skip

    return commit_and_end_transactions


def progress(app: faust.App) -> LaneProgress:
    return app.consumer._lane_progress  # type: ignore[attr-defined, no-any-return]


def _make_drain(lanes: Mapping[str, faust.ChannelT]) -> Any:
    async def _drain_messages(self: Any, fetcher: Any) -> None:
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        positions: LanePositions = self._lane_positions
        while not (consumer_should_stop() or fetcher_should_stop()):
            batches: dict[str, list[Message]] = {}
            seeks = positions.seeks
            previous: dict[Any, int] = {}  # partition -> the offset before, in this same fetch
            await asyncio.sleep(0)
            if self.should_stop:
                break
            async for tp, message in getmany(timeout=1.0):
                offset = message.offset
                lane = tp.topic in lanes
                if not lane:
                    r_offset = get_read_offset(tp)
                    if r_offset is not None and offset < r_offset:
                        continue  # already read (a re-fetch after a seek)
                # A lane's records are never skipped here: `take` skips those already handled. The
                # read offset can be stale: records of a fetch made before Faust's end-of-recovery
                # seek, drained after it (the loop awaits table records in between), set it past the
                # seek; the re-fetched records were then skipped while that fetch's batch was dropped
                # (flow stopped), a hole no commit could pass until the next rebalance.
                before = previous.get(tp)
                # A gap only between two records of one fetch (compaction, transaction markers). Not
                # against the read offset as Faust does: after a seek back, a record of a fetch made
                # before it would declare everything in between a gap, and commits would pass it.
                if before is not None and offset - before > 1 and acks_enabled_for(message.topic):
                    await self._add_gap(tp, before + 1, offset)
                previous[tp] = offset
                batch = batches.get(tp.topic) if lane else None
                if lane:
                    if batch is None:
                        batches[tp.topic] = [message]
                    else:
                        batch.append(message)
                else:
                    await self.wait_first(callback(message), self.suspend_flow.wait())
                set_read_offset(tp, offset)
            if batches and not positions.settled.is_set():
                # A seek is under way: records fetched meanwhile may be from the new positions, which
                # `take` would drop as fetched before it and nothing would fetch again (measured: an
                # exactly-once restart that never got the rest of a partition). Once it is done they
                # are dropped here and their partitions sought again.
                log.info("a fetch ended during a seek: waiting for it to re-seek what it moved")
                await positions.settled.wait()
            if batches and positions.seeks != seeks:
                await _reseek_moved(self, batches, seeks)
            for topic, messages in batches.items():
                if not await _hand_over(self, lanes[topic], LaneBatch(messages, seeks)):
                    break  # the flow stopped: these records are fetched again from the committed offsets

    return _drain_messages


def _make_new_offset(lanes: Mapping[str, faust.ChannelT], faust_new_offset: Any) -> Any:
    """Faust's commit position for a partition: for the lanes' topics the contiguous handled run from
    the committed offset (none in exactly-once mode: each batch commits in its transactions)."""

    def _new_offset(self: Any, tp: Any) -> int | None:
        if tp.topic not in lanes:
            return faust_new_offset(tp)
        self._acked[tp].clear()  # Faust's ack() still fills these; only its wait_empty needs acks
        self._acked_index[tp].clear()
        if self.app.in_transaction:
            return None
        return self._lane_progress.position(self.app.consumer_generation_id, tp)

    return _new_offset


def _make_perform_seek(lanes: Mapping[str, faust.ChannelT]) -> Any:
    """Faust's seek to the committed offsets at the end of recovery, telling LaneProgress where each
    lane partition starts (Faust itself records an offset of 0 as unknown)."""

    async def perform_seek(self: Any) -> None:
        settled = self._lane_positions.settled
        settled.clear()
        try:
            await _seek_to_committed(self)
        finally:
            settled.set()

    async def _seek_to_committed(self: Any) -> None:
        committed = await self.seek_to_committed()
        self._read_offset.update(
            {tp: offset if offset is not None and offset >= 0 else None for tp, offset in committed.items()}
        )
        self._committed_offset.update({tp: o or None for tp, o in committed.items() if o is not None})
        starts = {TP(tp.topic, tp.partition): o for tp, o in committed.items() if tp.topic in lanes}
        fresh = [tp for tp, offset in starts.items() if offset is None or offset < 0]
        if fresh:  # nothing committed yet: the group starts at the log start (auto.offset.reset earliest)
            starts.update(await self.earliest_offsets(*fresh))
        # aiokafka seeks only to committed offsets above 0: the others stay wherever the last fetch
        # left them, and records fetched before (dropped: see `take`) would never come again.
        uncommitted = {tp: offset for tp, offset in starts.items() if not committed.get(tp)}
        if uncommitted:
            await self.seek_wait(uncommitted)  # in the consumer's thread: see `_reseek_moved`
        # At once after the seeks (no await in between): the flow may be open, a batch taken any time.
        self._lane_positions.repositioned(starts, self.app.consumer_generation_id)
        self._lane_progress.seeked(self.app.consumer_generation_id, starts)

    return perform_seek


class LaneBatch(list):
    """A fetch's records of one lane topic, and the number of seeks before it was fetched."""

    __slots__ = ("fetched_after",)

    def __init__(self, messages: list[Message], fetched_after: int) -> None:
        super().__init__(messages)
        self.fetched_after = fetched_after


def _make_on_recovery_completed(consumer: Any, faust_completed: Any) -> Any:
    """Faust calls this once a generation's active tables are read to their changelogs' ends; it
    seeks the partitions to their committed offsets (unless another rebalance began): that seek
    makes the generation's lanes ready (`LanePositions`)."""

    async def on_recovery_completed(generation_id: int = 0) -> None:
        positions: LanePositions = consumer._lane_positions
        positions.completing = generation_id
        try:
            await faust_completed(generation_id)
        finally:
            positions.completing = None

    return on_recovery_completed


async def _reseek_moved(consumer: Any, batches: dict[str, list[Message]], seeks: int) -> None:
    """A seek came while a fetch was drained: the records of the partitions it moved may be from
    their old positions or their new ones (which it will not fetch again). They are dropped, and
    those partitions sought again to where their handling resumes."""
    positions: LanePositions = consumer._lane_positions
    moved = set(positions.moved_since({m.tp for ms in batches.values() for m in ms}, seeks))
    if not moved:
        return
    for topic, messages in list(batches.items()):
        kept = [m for m in messages if m.tp not in moved]
        if kept:
            batches[topic] = kept
        else:  # an empty batch crashed the agent taking it (measured: IndexError in `take`)
            del batches[topic]
    generation, handled = consumer.app.consumer_generation_id, consumer._lane_progress
    known = handled.base if handled.generation == generation else {}
    starts = {tp: known[tp] for tp in moved if tp in known}
    # The others: a rebalance is on, its recovery's seek moves them. The seek runs in the consumer's
    # thread (Faust's `Consumer.seek` calls aiokafka's from this one: its fetcher state and futures
    # belong to the other thread's loop; an exactly-once restart then never fetched one partition
    # again, 3 runs in 36).
    try:
        if starts:
            await consumer.seek_wait(starts)
    except Exception as exc:  # a partition revoked meanwhile: the rebalance's recovery seeks again
        log.warning("could not seek %s again (%r): a rebalance will", sorted(starts), exc)
        return
    positions.repositioned(starts, generation)
    log.info("sought %s again to %s: a fetch spanned a seek", sorted(starts), sorted(starts.values()))


async def _hand_over(consumer: Any, lane: faust.ChannelT, messages: list[Message]) -> bool:
    """Put a batch into its lane; False if the consumer's flow stops first (rebalance, shutdown).

    A bare `await put` on a full lane can hang for good: at a rebalance Faust clears the queues
    without waking a blocked putter, so the agent waits on an empty queue and the drain loop on a
    full one, and the revocation waits for both.
    """
    if not any(s.queue.full() for s in lane._subscribers):  # type: ignore[attr-defined]
        await lane.put(messages)  # there is room: no wait
        return True
    put = asyncio.ensure_future(lane.put(messages))
    stopped = asyncio.ensure_future(consumer.suspend_flow.wait())
    await asyncio.wait((put, stopped), return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if put.done():
        return True
    put.cancel()
    return False


def take(app: faust.App, messages: list[Message]) -> list[Message]:
    """Start a batch: the messages to handle, tracked as in progress (as Faust's stream does for each
    event it takes), so a rebalance or shutdown waits until they are acked.

    A batch fetched before a rebalance or before the tables were recovered, or taken while a
    rebalance runs, is dropped: its partitions may be another worker's now, or the state it would
    read is not complete; the records are fetched again from the committed offsets. Records this
    worker already handled and acked in this generation are skipped: Faust seeks its partitions to
    the committed offsets when recovery ends, and a fetch made before that seek is then read twice
    (measured: a batch of 1,000 decided twice after a restart, two committed actions per event in
    exactly-once mode)."""
    if not app.flow_control.is_active() or messages[0].generation_id != app.consumer_generation_id:
        log.info("dropped %d records of %s (%s..%s) fetched before a rebalance (generation %s, now %s)",
                 len(messages), messages[0].tp, messages[0].offset, messages[-1].offset,
                 messages[0].generation_id, app.consumer_generation_id)  # fmt: skip
        return []
    generation, lane = messages[0].generation_id, progress(app)
    positions: LanePositions = app.consumer._lane_positions  # type: ignore[attr-defined]
    fetched_after = getattr(messages, "fetched_after", -1)
    current = [m for m in messages if positions.current(generation, m.tp, fetched_after)]
    if len(current) < len(messages):
        log.info("dropped %d records of %s fetched before the tables were recovered or a seek",
                 len(messages) - len(current), messages[0].topic)  # fmt: skip
    messages = current
    fresh = [m for m in messages if not lane.is_handled(generation, m.tp, m.offset)]
    if len(fresh) < len(messages):
        log.info("skipped %d records of %s handled before (fetched again after a seek)",
                 len(messages) - len(fresh), messages[0].topic)  # fmt: skip
    track = app.consumer._unacked_messages.add
    for message in fresh:
        track(message)
    return fresh


def ack_all(app: faust.App, messages: list[Message]) -> None:
    """Mark a batch done: its offsets may be committed once every record before them is handled."""
    consumer: Any = app.consumer
    ack = consumer.ack
    offsets: dict[Any, list[int]] = {}
    for message in messages:
        ack(message)
        offsets.setdefault(message.tp, []).append(message.offset)
    lane, generation = progress(app), messages[0].generation_id
    for tp, handled in offsets.items():
        lane.handled(generation, tp, handled, consumer._gap.get(tp))


def subscribe(app: faust.App, topic: faust.TopicT) -> None:
    """Subscribe the consumer to a topic no Faust stream reads directly (its lane does)."""
    app.topics.add(topic)
