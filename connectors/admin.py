"""Topic administration and offset queries over confluent-kafka's AdminClient/Consumer."""

from __future__ import annotations

from collections.abc import Iterable

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
