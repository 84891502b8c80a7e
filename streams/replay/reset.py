"""`agentstream reset`: move a consumer group of the app to a datetime, earliest, latest or offsets.

A plan first (dry run by default): per partition the committed offset and the target, so an
operator sees what moves before anything does. Executing refuses while the group has members,
because running workers would commit over the new offsets. Wiping the local state makes the next
worker rebuild its tables from their changelogs (the tables hold entity state and pending
decisions; the changelogs are the source of truth).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from connectors.admin import admin_client
from streams.replay.groups import TIMEOUT_S, committed, committed_for, require_idle
from streams.replay.sources import OPEN, Bound, SourceError, parse_time, resolve_range
from streams.settings import Settings

LATEST = Bound(offset=2**62)  # clamped to each partition's end


class ResetError(ValueError):
    """A target or topic that cannot be planned, or a plan that cannot be applied."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where to move: one bound for every partition, or explicit offsets per partition."""

    text: str
    bound: Bound | None = None
    per_partition: dict[int, int] | None = None


def parse_target(text: str) -> Target:
    """`earliest`, `latest`, an offset `N` (every partition), `P=N,P=N` (those partitions) or an ISO time."""
    value = text.strip()
    if value == "earliest":
        return Target(value, bound=OPEN)
    if value == "latest":
        return Target(value, bound=LATEST)
    if value.isdigit():
        return Target(value, bound=Bound.at_offset(int(value)))
    if "=" in value:
        try:
            pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
            offsets = {int(p): int(o) for p, o in pairs}
        except ValueError:
            raise ResetError(f"explicit offsets are PARTITION=OFFSET[,...], got {text!r}") from None
        if any(p < 0 or o < 0 for p, o in offsets.items()):
            raise ResetError(f"partitions and offsets are >= 0, got {text!r}")
        return Target(value, per_partition=offsets)
    try:
        return Target(value, bound=Bound.at_time(parse_time(value)))
    except SourceError:
        raise ResetError(
            f"unknown target {text!r}: earliest | latest | OFFSET | PARTITION=OFFSET,... | ISO datetime"
        ) from None


@dataclass(frozen=True, slots=True)
class PlanRow:
    topic: str
    partition: int
    current: int | None  # committed offset; None: nothing committed yet
    target: int
    note: str = ""

    @property
    def moves(self) -> bool:
        return self.current != self.target


def group_topics(settings: Settings, group: str) -> list[str]:
    """The topics the group has committed offsets on, else the scenario's agent input topics."""
    topics = sorted({topic for topic, _ in committed(settings, group)})
    if topics:
        return topics
    names = settings.topics()
    return [names.events, names.feedback, names.learning]


def plan(settings: Settings, group: str, target: Target, topics: list[str] | None = None) -> list[PlanRow]:
    """Per partition: the committed offset and where the target puts it (read-only)."""
    rows: list[PlanRow] = []
    names = topics or group_topics(settings, group)
    for topic in names:
        try:
            span = resolve_range(settings, topic, OPEN, OPEN)  # partition -> (low, high)
            located = span if target.bound is None else resolve_range(settings, topic, target.bound, OPEN)
        except SourceError as exc:
            raise ResetError(str(exc)) from None
        current = committed_for(settings, group, [TopicPartition(topic, p) for p in sorted(span)])
        for p in sorted(span):
            low, high = span[p]
            note = ""
            if target.per_partition is not None:
                if p not in target.per_partition:
                    continue
                wanted = target.per_partition[p]
                offset = min(max(wanted, low), high)
                if offset != wanted:
                    note = f"clamped from {wanted} to [{low}, {high}]"
            else:
                offset = located[p][0]
            committed_offset = current.get((topic, p), -1)
            rows.append(PlanRow(topic, p, committed_offset if committed_offset >= 0 else None, offset, note))
    if target.per_partition is not None:
        known = {row.partition for row in rows}
        missing = sorted(set(target.per_partition) - known)
        if missing:
            raise ResetError(f"no partition(s) {missing} in {', '.join(names)}")
    return rows


def execute(settings: Settings, group: str, rows: list[PlanRow]) -> dict[tuple[str, int], int]:
    """Apply a plan; refuses while the group has members. Returns the offsets committed after it."""
    require_idle(settings, group, "reset its offsets")
    if not rows:
        return {}
    partitions = [TopicPartition(r.topic, r.partition, r.target) for r in rows]
    request = [ConsumerGroupTopicPartitions(group, partitions)]
    admin = admin_client(settings)  # referenced until the future resolves: its handle serves it
    result = admin.alter_consumer_group_offsets(request, request_timeout=TIMEOUT_S)[group].result(TIMEOUT_S)
    failed = [f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in result.topic_partitions or [] if tp.error]
    if failed:
        raise ResetError(f"some offsets were not moved: {'; '.join(failed[:5])}")
    return committed_for(settings, group, [TopicPartition(r.topic, r.partition) for r in rows])


def wipe_state(path: str | Path) -> Path:
    """Delete a worker's local state directory so its tables are rebuilt from the changelogs.

    Only a directory that looks like Faust's (it holds a `v<N>` app folder) is deleted: a typo must
    not remove something else.
    """
    path = Path(path).resolve()
    if not path.is_dir():
        raise ResetError(f"no such state directory: {path}")
    if path in {Path("/"), Path.home().resolve(), Path.cwd().resolve()}:
        raise ResetError(f"refusing to delete {path}")
    if not any(
        child.is_dir() and child.name[:1] == "v" and child.name[1:].isdigit() for child in path.iterdir()
    ):
        raise ResetError(f"{path} does not look like a worker state directory (no v<N> folder inside)")
    shutil.rmtree(path)
    return path
