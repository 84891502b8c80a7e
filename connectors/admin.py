"""Topic administration and offset queries over confluent-kafka's AdminClient/Consumer."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from streams.settings import Settings


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(settings.confluent_config(log_level=3))


def ensure_topics(
    settings: Settings,
    topics: Iterable[str],
    partitions: int | None = None,
    config: dict[str, str] | None = None,
) -> None:
    """Create the topics that do not exist yet (idempotent; existing ones are left as they are)."""
    admin = admin_client(settings)
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [
        NewTopic(
            t,
            num_partitions=partitions or settings.partitions,
            replication_factor=settings.replication_factor,
            config=config or {},
        )
        for t in topics
        if t not in existing
    ]
    if not wanted:
        return
    for topic, future in admin.create_topics(wanted, operation_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"could not create topic {topic}: {exc}") from exc


def set_topic_config(settings: Settings, topic: str, config: dict[str, str]) -> None:
    """Set topic configs on an existing topic (incremental: other settings stay as they are)."""
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in config.items()
        ],
    )
    admin = admin_client(settings)  # referenced until the futures resolve
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()


def end_offsets(settings: Settings, topic: str) -> dict[int, tuple[int, int]]:
    """partition -> (low, high) watermark; empty when the topic does not exist."""
    consumer = Consumer(settings.confluent_config(**{"group.id": "agentstream-offsets", "log_level": 3}))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return {}
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in meta.partitions
        }
    finally:
        consumer.close()


def record_count(settings: Settings, topic: str) -> int:
    """Records in a topic (high - low watermark summed); exact for topics without transactions."""
    return sum(high - low for low, high in end_offsets(settings, topic).values())


def group_offsets(
    settings: Settings,
    topics: Collection[str],
    group: str | None = None,
    consumer: Consumer | None = None,
) -> list[tuple[TopicPartition, int, int]]:
    """(partition holding the group's committed offset, low watermark, high watermark) for the
    `settings.partitions` partitions of each topic; the group defaults to the app's (`app_id`). It
    never joins the group. A caller that asks often can pass its own `consumer` (configured with
    the group's `group.id`)."""
    own = consumer is None
    if consumer is None:
        conf = {"group.id": group or settings.app_id, "log_level": 3}
        consumer = Consumer(settings.confluent_config(**conf))
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        return [
            (tp, *consumer.get_watermark_offsets(tp, timeout=10, cached=False))
            for tp in consumer.committed(tps, timeout=10)
        ]
    finally:
        if own:
            consumer.close()


def group_committed(
    settings: Settings, topics: Collection[str], group: str | None = None, consumer: Consumer | None = None
) -> int:
    """Records of `topics` a consumer group has committed (what `group_lag` leaves out), summed."""
    return sum(max(tp.offset, low) - low for tp, low, _ in group_offsets(settings, topics, group, consumer))


def group_lag(
    settings: Settings,
    topics: Collection[str],
    markers: bool = False,
    group: str | None = None,
    consumer: Consumer | None = None,
) -> int:
    """Records of `topics` not yet committed by a consumer group (see `group_offsets`): end offset
    minus committed offset (or the low watermark when nothing is committed), summed.

    With `markers` (exactly-once: the topic is written in transactions) a partition whose committed
    offset is one short of its end counts as drained: that last offset is a commit marker.
    """
    lag = 0
    for tp, low, high in group_offsets(settings, topics, group, consumer):
        behind = high - max(tp.offset, low)
        lag += 0 if markers and behind == 1 and tp.offset > 0 else behind
    return lag
