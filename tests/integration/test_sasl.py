"""The whole pipeline over SASL/SCRAM: an embedded broker whose client listener requires SASL, a
worker (Faust and aiokafka) and the publisher and readers (confluent-kafka) authenticating with the
settings' credentials; a wrong password is refused; the secret never reaches the worker's log."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from connectors.admin import ensure_topics
from connectors.broker import EmbeddedKafka
from streams.settings import Settings
from tests.integration.harness import Traffic, audit, workers

pytestmark = pytest.mark.integration

SECRET = "scram-S3cret!"


def test_pipeline_over_sasl_scram(settings: Settings) -> None:
    sasl = settings.with_overrides(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="agent",
        sasl_password=SECRET,
    )
    with EmbeddedKafka(brokers=1, settings=sasl) as cluster:
        s = sasl.with_overrides(bootstrap_servers=cluster.bootstrap)
        ensure_topics(s, s.topics().all())
        with workers(s, 1) as fleet:
            traffic = Traffic(s, events=1_000, rate=0)
            traffic.start()
            result = audit(s, traffic.finish(), traffic.label_ids)
            log = fleet.log(0).read_text(errors="replace")
        wrong = AdminClient(s.with_overrides(sasl_password="wrong").confluent_config(log_level=0))
        with pytest.raises(KafkaException):
            wrong.list_topics(timeout=5)
    assert result.lost == 0 and result.actions >= 1_000
    assert SECRET not in log
