"""The app's consumer group as the admin API sees it: who is in it, and where it has committed.

Rewriting offsets or a table's changelog under running workers is a race the workers win: they
commit over the new offsets, or their learners overwrite the promoted rows. Both operations
therefore refuse while the group has members.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition

from connectors.admin import admin_client
from streams.settings import Settings

TIMEOUT_S = 15.0


class GroupActive(RuntimeError):
    """The consumer group has live members: stop the workers first."""


@dataclass(frozen=True, slots=True)
class GroupState:
    group: str
    state: str  # EMPTY, STABLE, DEAD (never existed), ...
    members: int


def describe(settings: Settings, group: str) -> GroupState:
    admin = admin_client(settings)  # keep it referenced until the future resolves: its handle serves it
    future = admin.describe_consumer_groups([group], request_timeout=TIMEOUT_S)[group]
    try:
        info = future.result(TIMEOUT_S)
    except KafkaException as exc:
        if "GROUP_ID_NOT_FOUND" in str(exc):
            return GroupState(group, "DEAD", 0)
        raise
    return GroupState(group, info.state.name, len(info.members))


def require_idle(settings: Settings, group: str, doing: str) -> GroupState:
    """Raise GroupActive unless the group has no members."""
    state = describe(settings, group)
    if state.members:
        raise GroupActive(
            f"refusing to {doing}: consumer group {group!r} has {state.members} live member(s) "
            f"(state {state.state}); stop its workers first"
        )
    return state


def committed(settings: Settings, group: str) -> dict[tuple[str, int], int]:
    """(topic, partition) -> committed offset, for every partition the group has committed."""
    request = [ConsumerGroupTopicPartitions(group)]
    admin = admin_client(settings)
    future = admin.list_consumer_group_offsets(request, request_timeout=TIMEOUT_S)[group]
    result = future.result(TIMEOUT_S)
    return {
        (tp.topic, tp.partition): tp.offset
        for tp in result.topic_partitions or []
        if tp.error is None and tp.offset >= 0
    }


def committed_for(
    settings: Settings, group: str, partitions: list[TopicPartition]
) -> dict[tuple[str, int], int]:
    """The committed offsets of the given partitions (-1: nothing committed)."""
    request = [ConsumerGroupTopicPartitions(group, partitions)]
    admin = admin_client(settings)
    future = admin.list_consumer_group_offsets(request, request_timeout=TIMEOUT_S)[group]
    return {(tp.topic, tp.partition): tp.offset for tp in future.result(TIMEOUT_S).topic_partitions or []}
