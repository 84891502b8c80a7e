"""Where a replay's records come from: a JSONL file, or a scenario's topics over a range.

The Kafka reader uses its own consumer with manual assignment and never commits, so reading never
joins, rebalances or moves the live consumer groups. Ranges are located on the broker's time index
(offsets_for_times: the first offset whose record timestamp is >= the bound), the same semantics as
`kafka-consumer-groups --to-datetime`, or given as offsets; the end bound is exclusive.
"""

from __future__ import annotations

import time
import uuid
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain, repeat
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from confluent_kafka import Consumer, Message, TopicPartition

from streams.replay.timeline import EVENT, FEEDBACK, RawRecord
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.replay.live_log import LiveLog

KINDS = {"event": EVENT, "feedback": FEEDBACK}
_EVENT_HEAD = b'{"kind":"event","key":"'
_FEEDBACK_HEAD = b'{"kind":"feedback","key":"'
_SIM_TS = b'","sim_ts":'
_VALUE = b',"value":'
TOPIC_SIM_TS = "0"  # the record time written in every `EnvelopeLines` line (never read)
_MIDDLE = f'","sim_ts":{TOPIC_SIM_TS},"value":'.encode()  # between key and value
FETCH_RECORDS = 20_000  # per consume call: about 4 MB of risk lines, the size the parser works best at
STALL_S = 30.0  # no record and no progress for this long while reading a range: give up


class SourceError(ValueError):
    """A range, file or topic that cannot be read as asked (the CLI shows the message)."""


# --- JSONL -------------------------------------------------------------------------------------


def _fast_line(line: bytes) -> RawRecord | None:
    """Slice a line exactly as `generate_to_jsonl` writes it, without decoding the value twice.

    The value is the record's original bytes (written as an orjson Fragment), so handing the slice to
    the scenario's parser is what publishing and consuming the record would do. Anything unusual
    (escapes in the key, other field order) returns None and takes the general path.
    """
    if line.startswith(_EVENT_HEAD):
        kind, start = EVENT, len(_EVENT_HEAD)
    elif line.startswith(_FEEDBACK_HEAD):
        kind, start = FEEDBACK, len(_FEEDBACK_HEAD)
    else:
        return None
    key_end = line.find(_SIM_TS, start)
    value_at = line.find(_VALUE, key_end)
    end = line.rfind(b"}")
    if key_end < 0 or value_at < 0 or end <= value_at:
        return None
    key = line[start:key_end]
    if b"\\" in key or b'"' in key:
        return None
    try:
        ts = float(line[key_end + len(_SIM_TS) : value_at])
    except ValueError:
        return None
    return RawRecord(kind, key.decode(), line[value_at + len(_VALUE) : end], ts)


def read_jsonl(path: str | Path) -> Iterator[RawRecord]:
    """Records from a file of `{kind, key, sim_ts, value}` lines (connectors.generate.generate_to_jsonl)."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"no such file: {path}")
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            record = record_of_line(line, line_no, path)
            if record is not None:
                yield record


def record_of_line(line: bytes, line_no: int, path: Path) -> RawRecord | None:
    """One JSONL line as a record; None for a blank line; SourceError if it is not a record at all."""
    record = _fast_line(line)
    if record is not None:
        return record
    if not line.strip():
        return None
    return _general_line(line, line_no, path)


def _general_line(line: bytes, line_no: int, path: Path) -> RawRecord:
    try:
        d = orjson.loads(line)
        kind = KINDS[d["kind"]]
        value = d["value"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise SourceError(f"{path}:{line_no}: not a {{kind, key, sim_ts, value}} record ({exc})") from None
    raw = value.encode() if isinstance(value, str) else orjson.dumps(value)
    ts = d.get("sim_ts")
    key = d.get("key")
    return RawRecord(kind, None if key is None else str(key), raw, float(ts) if ts is not None else None)


def read_actions_jsonl(path: str | Path, actions: tuple[str, ...]) -> LiveLog:
    """Live decisions from a JSONL file of action records (as in the actions topic)."""
    from streams.replay.live_log import parse_actions  # the topic reader's child starts faster without it

    path = Path(path)
    if not path.is_file():
        raise SourceError(f"no such file: {path}")
    with path.open("rb") as fh:
        return parse_actions((line for line in fh if line.strip()), actions)


# --- Kafka ranges --------------------------------------------------------------------------------


def parse_time(text: str) -> datetime:
    """An ISO 8601 datetime; without a zone it is UTC (a replay should not depend on the laptop)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SourceError(f"not an ISO datetime: {text!r} (e.g. 2024-01-01T12:00:00Z)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Bound:
    """One end of a range: a record time (epoch ms), an offset (every partition), or open (None)."""

    time_ms: int | None = None
    offset: int | None = None

    @classmethod
    def at_time(cls, moment: datetime) -> Bound:
        return cls(time_ms=epoch_ms(moment))

    @classmethod
    def at_offset(cls, offset: int) -> Bound:
        if offset < 0:
            raise SourceError(f"offsets are >= 0, got {offset}")
        return cls(offset=offset)


OPEN = Bound()


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    key: bytes | None
    value: bytes | None  # None: a tombstone (only when asked for)
    timestamp_ms: int
    headers: list[tuple[str, bytes]] | None
    partition: int
    offset: int


# librdkafka's defaults pause fetching for a second whenever 100,000 messages are queued
# (`fetch.queue.backoff.ms`) and fetch 1 MiB per partition: reading 1M risk records took 5.5 s with
# them, 0.9 s with these (perf/RESULTS-replay.md).
FAST_FETCH = {"fetch.queue.backoff.ms": 10, "max.partition.fetch.bytes": 10 << 20}


def _consumer(settings: Settings) -> Consumer:
    """No group membership, no commits: a unique group id only because librdkafka wants one."""
    return Consumer(
        settings.confluent_config(
            **{
                "group.id": f"agentstream-replay-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "log_level": 3,
                **FAST_FETCH,
            }
        )
    )


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise SourceError(f"topic {topic!r} does not exist")
    return sorted(meta.partitions)


def _locate(consumer: Consumer, topic: str, partition: int, bound: Bound, low: int, high: int) -> int:
    if bound.offset is not None:
        return min(max(bound.offset, low), high)
    if bound.time_ms is None:
        return -1
    found = consumer.offsets_for_times([TopicPartition(topic, partition, bound.time_ms)], timeout=10)[0]
    return high if found.offset < 0 else found.offset  # -1: no record at or after that time


def resolve_range(settings: Settings, topic: str, start: Bound, end: Bound) -> dict[int, tuple[int, int]]:
    """partition -> [first, end) offsets of the range (end exclusive; empty ranges have first == end)."""
    if start.time_ms is not None and end.time_ms is not None and end.time_ms <= start.time_ms:
        raise SourceError("the range is empty: --to must be after --from")
    if start.offset is not None and end.offset is not None and end.offset <= start.offset:
        raise SourceError("the range is empty: the end offset must be after the start offset")
    consumer = _consumer(settings)
    try:
        out: dict[int, tuple[int, int]] = {}
        for p in _partitions(consumer, topic):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            first = _locate(consumer, topic, p, start, low, high)
            last = _locate(consumer, topic, p, end, low, high)
            first = low if first < 0 else first
            last = high if last < 0 else last
            out[p] = (first, max(first, last))
        return out
    finally:
        consumer.close()


def read_batches(
    settings: Settings,
    topic: str,
    ranges: dict[int, tuple[int, int]],
    progress: Callable[[int], None] | None = None,
    tombstones: bool = False,
) -> Iterator[list[Message]]:
    """The records in the given offset ranges, one list per fetch (offset order within a partition);
    records without a value (tombstones) only if `tombstones`. A finished partition is paused."""
    todo = {p: r for p, r in ranges.items() if r[1] > r[0]}
    if not todo:
        return
    ends = {p: last for p, (_, last) in todo.items()}
    consumer = _consumer(settings)
    try:
        consumer.assign([TopicPartition(topic, p, first) for p, (first, _) in todo.items()])
        count = 0
        last_progress = time.monotonic()
        while todo:
            batch = consumer.consume(num_messages=FETCH_RECORDS, timeout=0.5)
            positions = _positions(consumer, topic, ends)
            if batch:
                last_progress = time.monotonic()
                kept = _in_range(batch, ends, positions, tombstones)
                if kept:
                    count += len(kept)
                    yield kept
                if progress is not None:
                    progress(count)
            _drop_finished(consumer, topic, todo, positions)
            if todo and time.monotonic() - last_progress > STALL_S:
                raise SourceError(f"reading {topic} stalled with partitions {sorted(todo)} unfinished")
    finally:
        consumer.close()


def read_topic(
    settings: Settings,
    topic: str,
    ranges: dict[int, tuple[int, int]],
    progress: Callable[[int], None] | None = None,
    tombstones: bool = False,
) -> Iterator[KafkaRecord]:
    """`read_batches` record by record."""
    for batch in read_batches(settings, topic, ranges, progress, tombstones):
        for msg in batch:
            yield KafkaRecord(
                msg.key(), msg.value(), msg.timestamp()[1], msg.headers(), msg.partition(), msg.offset()
            )


def _positions(consumer: Consumer, topic: str, ends: dict[int, int]) -> dict[int, int]:
    """partition -> the offset after the last record consumed (-1001: none yet)."""
    return {tp.partition: tp.offset for tp in consumer.position([TopicPartition(topic, p) for p in ends])}


def _in_range(
    batch: list[Message], ends: dict[int, int], positions: dict[int, int], tombstones: bool
) -> list[Message]:
    """The batch's records before their partition's end, without errors (and tombstones). Checked
    record by record only when the batch may hold such a record: a partition consumed past its end,
    an error, a record without a value."""
    past_end = any(positions[p] > end for p, end in ends.items())
    if past_end or any(map(Message.error, batch)) or (not tombstones and None in map(Message.value, batch)):
        return [
            msg
            for msg in batch
            if msg.error() is None
            and msg.offset() < ends.get(msg.partition(), -1)
            and (tombstones or msg.value() is not None)
        ]
    return batch


def _drop_finished(
    consumer: Consumer, topic: str, todo: dict[int, tuple[int, int]], positions: dict[int, int]
) -> None:
    """Partitions consumed to their end (also when their last offsets hold no record: compaction,
    transaction markers) are done and paused: their next fetches would only be dropped."""
    done = [p for p in todo if positions[p] >= 0 and positions[p] >= todo[p][1]]
    for p in done:
        del todo[p]
    if done:
        consumer.pause([TopicPartition(topic, p) for p in done])


def _text_key(key: bytes | None) -> str | None:
    return None if key is None else key.decode("utf-8", "replace")


@dataclass(slots=True)
class TopicRead:
    """What a range read of the scenario's topics produced."""

    records: list[RawRecord]
    events: int
    feedback: int


class ScenarioRange:
    """The scenario's events in a range, and its feedback over the same record-time span.

    Feedback for the range's last decisions arrives after it ends: `feedback_grace_s` extends the
    feedback's end (by record time) to fetch it. With an offset range the span is the record times
    of the events read. The offset ranges are fixed when first located, so a second read (the
    per-record engine after the columnar one declined) reads the same records.
    """

    def __init__(
        self, settings: Settings, start: Bound = OPEN, end: Bound = OPEN, feedback_grace_s: float = 0.0
    ):
        self.settings, self.start, self.end, self.grace_s = settings, start, end, feedback_grace_s
        self.topics = settings.topics()
        self.event_range = resolve_range(settings, self.topics.events, start, end)
        self.feedback_range: dict[int, tuple[int, int]] | None = None
        if start == OPEN and end == OPEN:
            self.feedback_range = resolve_range(settings, self.topics.feedback, OPEN, OPEN)
        self.events = self.feedback = 0

    @property
    def estimate(self) -> int:
        """Records to read, at most (ranges count transaction markers; the feedback's range is
        known after the events are read, until then it counts as many labels as events)."""
        events = sum(last - first for first, last in self.event_range.values())
        if self.feedback_range is None:
            return 2 * events
        return events + sum(last - first for first, last in self.feedback_range.values())

    def batches(self, progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, list[Message]]]:
        """(EVENT or FEEDBACK, the records of one fetch): all events, then all feedback."""
        events, first, last = 0, None, None
        span = self.feedback_range is None  # the feedback's range follows the events' record times
        for batch in read_batches(self.settings, self.topics.events, self.event_range, progress):
            if span:
                low, high = min(map(Message.timestamp, batch))[1], max(map(Message.timestamp, batch))[1]
                first = low if first is None else min(first, low)
                last = high if last is None else max(last, high)
            events += len(batch)
            yield EVENT, batch
        self.events, self.feedback = events, 0
        ranges = self._feedback_range(first, last) if span else self.feedback_range
        if not ranges:
            return
        counted = None if progress is None else (lambda n: progress(events + n))
        for batch in read_batches(self.settings, self.topics.feedback, ranges, counted):
            self.feedback += len(batch)
            yield FEEDBACK, batch

    def _feedback_range(self, first_ms: int | None, last_ms: int | None) -> dict[int, tuple[int, int]] | None:
        """The feedback over the events' record-time span (None: no events, no feedback)."""
        if first_ms is None or last_ms is None:
            return None
        fb_start = Bound(time_ms=self.start.time_ms if self.start.time_ms is not None else first_ms)
        stop = self.end.time_ms if self.end.time_ms is not None else last_ms + 1
        fb_end = Bound(time_ms=stop + int(self.grace_s * 1000))
        self.feedback_range = resolve_range(self.settings, self.topics.feedback, fb_start, fb_end)
        return self.feedback_range

    def records(self, progress: Callable[[int], None] | None = None) -> list[RawRecord]:
        return [
            RawRecord(kind, _text_key(msg.key()), msg.value(), msg.timestamp()[1] / 1000.0)
            for kind, batch in self.batches(progress)
            for msg in batch
        ]


def read_scenario(
    settings: Settings,
    start: Bound = OPEN,
    end: Bound = OPEN,
    feedback_grace_s: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> TopicRead:
    """`ScenarioRange` read once as records."""
    scenario = ScenarioRange(settings, start, end, feedback_grace_s)
    records = scenario.records(progress)
    return TopicRead(records, scenario.events, scenario.feedback)


@dataclass(slots=True)
class EnvelopeLines:
    """Topic records as the JSONL lines `generate_to_jsonl` writes, for the template reader, with
    what gives each line's record back for the lines it does not take.

    A line's `sim_ts` is 0 and its record has no time: the columnar replay (risk) reads times from
    the values, every risk record carries its own (the Kafka timestamp is read only to locate a
    time range). A key or value holding a newline
    gets the line `{}` instead, which no template matches, and its record is kept in `odd`.
    """

    kind: int
    data: bytes
    key_lengths: array  # per line; -1: no key
    odd: dict[int, tuple[bytes | None, bytes | None]]

    @classmethod
    def of(cls, kind: int, batch: list[Message]) -> EnvelopeLines:
        head = _EVENT_HEAD if kind == EVENT else _FEEDBACK_HEAD
        raw_keys = list(map(Message.key, batch))
        keys = [b"" if k is None else k for k in raw_keys]
        values = [b"" if v is None else v for v in map(Message.value, batch)]
        pieces = zip(repeat(head), keys, repeat(_MIDDLE), values, repeat(b"}\n"), strict=False)
        data = b"".join(chain.from_iterable(pieces))  # C-level loops: no Python step per record
        odd: dict[int, tuple[bytes | None, bytes | None]] = {}
        if data.count(b"\n") != len(batch):
            pairs = enumerate(zip(keys, values, strict=True))
            odd = {i: (raw_keys[i], batch[i].value()) for i, (k, v) in pairs if b"\n" in k or b"\n" in v}
            data = b"".join(b"{}\n" if i in odd else b"".join((head, k, _MIDDLE, v, b"}\n"))
                            for i, (k, v) in enumerate(zip(keys, values, strict=True)))  # fmt: skip
        if None in raw_keys:
            key_lengths = array("i", [-1 if k is None else len(k) for k in raw_keys])
        else:
            key_lengths = array("i", map(len, raw_keys))
        return cls(kind, data, key_lengths, odd)

    def record(self, i: int, line: bytes) -> RawRecord:
        """Line i's record (`line`: its text, without the newline)."""
        if i in self.odd:
            key, value = self.odd[i]
        else:
            at, length = len(_EVENT_HEAD if self.kind == EVENT else _FEEDBACK_HEAD), self.key_lengths[i]
            key = None if length < 0 else line[at : at + length]
            value = line[at + max(length, 0) + len(_MIDDLE) : -1]
        return RawRecord(self.kind, _text_key(key), value)


def read_live_actions(
    settings: Settings, actions: tuple[str, ...], start: Bound = OPEN, end: Bound = OPEN
) -> LiveLog:
    """The live decisions in the actions topic (the whole topic unless a record-time span is given)."""
    from streams.replay.live_log import LiveLog, parse_actions

    topic = settings.topics().actions
    try:
        ranges = resolve_range(settings, topic, start, end)
    except SourceError:
        return LiveLog.of({})  # no actions topic: nothing to compare with
    batches = read_batches(settings, topic, ranges)
    return parse_actions(chain.from_iterable(map(Message.value, batch) for batch in batches), actions)
