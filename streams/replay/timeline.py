"""The replay's input: raw event and feedback records, parsed once and merged in event-time order.

Event time, not arrival order: a label that arrived three hours after its transaction must reach the
replayed policies three hours (of event time) later, whatever order the topics were read in. Each
record is parsed exactly once, here, because sorting by event time needs the parsed timestamp and
the engine must not pay for the parse twice.

Repeated text (account, terminal, country...) is interned as it is parsed: a million records then
share a few thousand string objects instead of holding a million copies of each (several hundred
MB per million events kept for the sort); the values are unchanged.

Ties (the same timestamp) go to events before feedback, then to arrival order: a label stamped with
its transaction's own time can only judge a decision that exists, and the live pipeline would
normally have made that decision first. The sort is stable, so equal inputs give equal timelines.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import count
from typing import Any, NamedTuple

from streams.core.scenario import InvalidEvent, Scenario

EVENT = 0
FEEDBACK = 1
NO_KEY = "feedback record without a key (expected the entity id)"
NO_TIME = "feedback record without a time (no outcome time and no record time)"

# Per scenario: (event fields, outcome fields) whose values repeat across records. A scenario can
# declare its own as `shared_fields`; unique ids (transaction ids) are left alone on purpose.
SHARED_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "risk": (
        ("account_id", "terminal_id", "currency", "merchant_category", "country", "channel"),
        ("account_id", "terminal_id"),
    ),
    "traffic": (("intersection_id", "run"), ("intersection_id",)),
}


class RawRecord(NamedTuple):
    """One record as a source read it; `ts` is the record's own time if the source has one (JSONL
    `sim_ts`, Kafka timestamp), used only for outcomes that carry no time of their own."""

    kind: int  # EVENT | FEEDBACK
    key: str | None
    value: bytes
    ts: float | None = None


# (event time, kind, arrival seq, parsed item, key, raw feedback text or None)
Item = tuple[float, int, int, Any, str | None, bytes | None]


@dataclass(slots=True)
class Timeline:
    """Parsed records sorted by (event time, kind, arrival): what the engine iterates."""

    items: list[Item]
    events: int = 0
    feedback: int = 0
    invalid: Counter[str] = field(default_factory=Counter)  # "event: <reason>" / "feedback: <reason>"

    @property
    def invalid_events(self) -> int:
        return sum(n for k, n in self.invalid.items() if k.startswith("event:"))

    @property
    def invalid_feedback(self) -> int:
        return sum(n for k, n in self.invalid.items() if k.startswith("feedback:"))


def outcome_time(scenario: Scenario) -> Callable[[Any], float | None]:
    """How to read an outcome's event time: the scenario's `outcome_ts` hook if it has one, else a
    `label_ts` attribute (risk labels), else None (the record's own time is used)."""
    hook = getattr(scenario, "outcome_ts", None)
    if hook is not None:
        return hook
    return lambda outcome: getattr(outcome, "label_ts", None)


def _interner(fields: tuple[str, ...]) -> Callable[[Any], None]:
    intern = sys.intern

    def share(item: Any) -> None:
        for name in fields:
            value = getattr(item, name, None)
            if type(value) is str:
                setattr(item, name, intern(value))

    return share


def _reason(text: str) -> str:
    """Group reasons by their first clause, as the worker's DLQ counters do."""
    return text.split(":")[0][:60]


def parse_records(
    scenario: Scenario,
    records: Iterable[RawRecord],
    invalid: Counter[str],
    progress: Callable[[int], None] | None = None,
    seqs: Iterable[int] | None = None,
) -> Iterator[Item]:
    """Parse every record once: valid ones are yielded as timeline items (arrival seq = position in
    `records`, or the matching `seqs` value), malformed ones are counted in `invalid`, not raised."""
    parse, parse_outcome, event_ts = scenario.parse, scenario.parse_outcome, scenario.event_ts
    when = outcome_time(scenario)
    event_fields, outcome_fields = getattr(scenario, "shared_fields", None) or SHARED_FIELDS.get(
        scenario.name, ((), ())
    )
    share_event, share_outcome = _interner(event_fields), _interner(outcome_fields)
    intern = sys.intern
    numbers = count() if seqs is None else iter(seqs)
    for seq, (kind, key, value, record_ts) in zip(numbers, records, strict=False):  # seqs may run on
        if progress is not None and not seq & 0xFFFF:
            progress(seq)
        if kind == EVENT:
            try:
                item = parse(value)
            except InvalidEvent as exc:
                invalid["event: " + _reason(exc.reason)] += 1
                continue
            share_event(item)
            yield (event_ts(item), EVENT, seq, item, key, None)
            continue
        try:
            outcome = parse_outcome(value)
        except InvalidEvent as exc:
            invalid["feedback: " + _reason(exc.reason)] += 1
            continue
        ts = when(outcome)
        if ts is None:
            ts = record_ts
        if not key:
            invalid["feedback: " + NO_KEY] += 1
        elif ts is None:
            invalid["feedback: " + NO_TIME] += 1
        else:
            share_outcome(outcome)
            yield (ts, FEEDBACK, seq, outcome, intern(key), value)


def build_timeline(
    scenario: Scenario, records: Iterable[RawRecord], progress: Callable[[int], None] | None = None
) -> Timeline:
    """Parse every record once and sort by event time; malformed records are counted, not raised."""
    invalid: Counter[str] = Counter()
    items = list(parse_records(scenario, records, invalid, progress))
    events = sum(1 for item in items if item[1] == EVENT)
    items.sort()  # tuples: time, then kind (events first), then arrival seq (unique: never further)
    return Timeline(items, events, len(items) - events, invalid)
