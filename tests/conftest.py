"""Shared fixtures: one embedded Kafka broker per test session (unless KAFKA_BOOTSTRAP_SERVERS)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.settings import Settings, load_settings


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    from connectors.broker import kafka_cluster

    settings = load_settings()
    with kafka_cluster(settings, log=lambda m: None) as bootstrap:
        yield bootstrap


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own app id, topic prefix and state folder; fast group joins."""
    run = uuid.uuid4().hex[:8]
    return load_settings(
        env={k: v for k, v in os.environ.items() if not k.startswith("AGENTSTREAM_")},
        bootstrap_servers=kafka_bootstrap,
        app_id=f"test-{run}",
        topic_prefix=f"t{run}-",
        data_dir=tmp_path / "state",
        partitions=4,
        session_timeout_s=6.0,
        heartbeat_interval_s=0.5,
        batch_within_s=0.01,
    )
