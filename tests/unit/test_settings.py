"""The one settings object: defaults, environment overrides, topic names, client configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.codecs import DLQ_OFFSET, DLQ_REASON, dlq_headers, dlq_payload, dlq_value
from streams.settings import load_settings


def test_environment_overrides_are_typed() -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
        "AGENTSTREAM_PARTITIONS": "12",
        "AGENTSTREAM_EPSILON": "0.1",
        "AGENTSTREAM_DATA_DIR": "/tmp/x",
        "AGENTSTREAM_TOPIC_PREFIX": "dev-",
    }
    s = load_settings(env=env)
    assert s.bootstrap_servers == "k1:9092,k2:9092" and not s.embedded
    assert s.partitions == 12 and s.epsilon == 0.1 and s.data_dir == Path("/tmp/x")
    assert s.topics().events == "dev-risk.events" and s.topics("traffic").dlq == "dev-traffic.dlq"
    assert load_settings(env=env, partitions=3).partitions == 3  # explicit beats environment


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(ValueError, match="AGENTSTREAM_PARTITIONS"):
        load_settings(env={"AGENTSTREAM_PARTITIONS": "many"})


def test_producer_config_is_deliberate() -> None:
    conf = load_settings(env={}).producer_config()
    assert conf["acks"] == "all" and conf["enable.idempotence"] is True
    assert conf["compression.type"] == "lz4" and conf["linger.ms"] == 5


def test_dlq_record_keeps_the_original_bytes() -> None:
    payload = bytes(range(256))
    value = dlq_value(payload, "bad", "risk.events", 3, 42)
    assert dlq_payload(value) == payload
    headers = dict(dlq_headers("bad", "risk.events", 3, 42))
    assert headers[DLQ_REASON] == b"bad" and headers[DLQ_OFFSET] == b"42"


def test_a_configured_cluster_launches_nothing() -> None:
    from connectors.broker import kafka_cluster

    settings = load_settings(env={"KAFKA_BOOTSTRAP_SERVERS": "remote:9092"})
    with kafka_cluster(settings, log=print) as bootstrap:
        assert bootstrap == "remote:9092"
