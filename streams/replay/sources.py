"""Where a replay's records come from: a JSONL file, or a scenario's topics over a range.

The Kafka reader uses its own consumer with manual assignment and never commits, so reading never
joins, rebalances or moves the live consumer groups. Ranges are located on the broker's time index
(offsets_for_times: the first offset whose record timestamp is >= the bound), the same semantics as
`kafka-consumer-groups --to-datetime`, or given as offsets; the end bound is exclusive.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
from confluent_kafka import Consumer, TopicPartition

from streams.replay.engine import LiveDecision
from streams.replay.timeline import EVENT, FEEDBACK, RawRecord
from streams.settings import Settings

KINDS = {"event": EVENT, "feedback": FEEDBACK}
_EVENT_HEAD = b'{"kind":"event","key":"'
_FEEDBACK_HEAD = b'{"kind":"feedback","key":"'
_SIM_TS = b'","sim_ts":'
_VALUE = b',"value":'
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


def live_decisions(values: Iterable[bytes], actions: tuple[str, ...]) -> dict[str, LiveDecision]:
    """decision id -> what live decided, from action records (first one wins: re-sends are equal)."""
    index = {name: i for i, name in enumerate(actions)}
    out: dict[str, LiveDecision] = {}
    for value in values:
        try:
            d = orjson.loads(value)
            decision_id, action = d["decision_id"], index[d["action"]]
            decision = LiveDecision(action, float(d["prob"]), str(d["state_key"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # not an action record: the report counts only what it can compare
        out.setdefault(decision_id, decision)
    return out


def read_actions_jsonl(path: str | Path, actions: tuple[str, ...]) -> dict[str, LiveDecision]:
    """Live decisions from a JSONL file of action records (as in the actions topic)."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"no such file: {path}")
    with path.open("rb") as fh:
        return live_decisions((line for line in fh if line.strip()), actions)


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


def read_topic(
    settings: Settings,
    topic: str,
    ranges: dict[int, tuple[int, int]],
    progress: Callable[[int], None] | None = None,
    tombstones: bool = False,
) -> Iterator[KafkaRecord]:
    """Every record in the given offset ranges, in fetch order (offset order within a partition);
    records without a value (tombstones) only if `tombstones`."""
    todo = {p: r for p, r in ranges.items() if r[1] > r[0]}
    if not todo:
        return
    consumer = _consumer(settings)
    try:
        consumer.assign([TopicPartition(topic, p, first) for p, (first, _) in todo.items()])
        count = 0
        last_progress = time.monotonic()
        while todo:
            batch = consumer.consume(num_messages=10_000, timeout=0.5)
            for msg in batch:
                if msg.error() is not None:
                    continue
                p, offset = msg.partition(), msg.offset()
                span = todo.get(p)
                if span is None or offset >= span[1]:
                    continue
                value = msg.value()
                if value is not None or tombstones:
                    yield KafkaRecord(msg.key(), value, msg.timestamp()[1], msg.headers(), p, offset)
                    count += 1
                if offset >= span[1] - 1:
                    del todo[p]
            if batch:
                last_progress = time.monotonic()
                if progress is not None:
                    progress(count)
            _drop_finished(consumer, topic, todo)  # gaps (compaction, transaction markers) end early
            if todo and time.monotonic() - last_progress > STALL_S:
                raise SourceError(f"reading {topic} stalled with partitions {sorted(todo)} unfinished")
    finally:
        consumer.close()


def _drop_finished(consumer: Consumer, topic: str, todo: dict[int, tuple[int, int]]) -> None:
    if not todo:
        return
    for tp in consumer.position([TopicPartition(topic, p) for p in todo]):
        if tp.offset >= 0 and tp.offset >= todo[tp.partition][1]:
            del todo[tp.partition]


def _text_key(key: bytes | None) -> str | None:
    return None if key is None else key.decode("utf-8", "replace")


@dataclass(slots=True)
class TopicRead:
    """What a range read of the scenario's topics produced."""

    records: list[RawRecord]
    events: int
    feedback: int
    first_ms: int | None  # record-time span of the events read
    last_ms: int | None


def read_scenario(
    settings: Settings,
    start: Bound = OPEN,
    end: Bound = OPEN,
    feedback_grace_s: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> TopicRead:
    """The scenario's events in the range, and its feedback over the same record-time span.

    Feedback for the range's last decisions arrives after it ends: `feedback_grace_s` extends the
    feedback's end (by record time) to fetch it. With an offset range the span is the record times
    of the events read.
    """
    topics = settings.topics()
    records: list[RawRecord] = []
    first_ms = last_ms = None
    event_range = resolve_range(settings, topics.events, start, end)
    for rec in read_topic(settings, topics.events, event_range, progress):
        records.append(RawRecord(EVENT, _text_key(rec.key), rec.value, rec.timestamp_ms / 1000.0))
        first_ms = rec.timestamp_ms if first_ms is None else min(first_ms, rec.timestamp_ms)
        last_ms = rec.timestamp_ms if last_ms is None else max(last_ms, rec.timestamp_ms)
    events = len(records)
    if start == OPEN and end == OPEN:
        fb_start, fb_end = OPEN, OPEN
    elif first_ms is None:
        return TopicRead(records, events, 0, None, None)
    else:
        fb_start = Bound(time_ms=start.time_ms if start.time_ms is not None else first_ms)
        stop = end.time_ms if end.time_ms is not None else (last_ms or 0) + 1
        fb_end = Bound(time_ms=stop + int(feedback_grace_s * 1000))
    feedback_range = resolve_range(settings, topics.feedback, fb_start, fb_end)
    for rec in read_topic(settings, topics.feedback, feedback_range):
        records.append(RawRecord(FEEDBACK, _text_key(rec.key), rec.value, rec.timestamp_ms / 1000.0))
    return TopicRead(records, events, len(records) - events, first_ms, last_ms)


def read_live_actions(
    settings: Settings, actions: tuple[str, ...], start: Bound = OPEN, end: Bound = OPEN
) -> dict[str, LiveDecision]:
    """The live decisions in the actions topic (the whole topic unless a record-time span is given)."""
    topic = settings.topics().actions
    try:
        ranges = resolve_range(settings, topic, start, end)
    except SourceError:
        return {}  # no actions topic: nothing to compare with
    return live_decisions((rec.value for rec in read_topic(settings, topic, ranges)), actions)
