"""One typed settings object for the whole project.

Every field can be overridden by an environment variable `AGENTSTREAM_<FIELD>` (upper case);
the bootstrap servers also by the conventional `KAFKA_BOOTSTRAP_SERVERS`. Topic names and client
configurations are derived here, so no module spells a topic name or a client option itself.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_PREFIX = "AGENTSTREAM_"
SECRET_FIELDS = frozenset({"sasl_password", "ssl_key_password"})


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic names of one scenario."""

    events: str
    actions: str
    feedback: str
    learning: str
    dlq: str

    def all(self) -> tuple[str, ...]:
        return (self.events, self.actions, self.feedback, self.learning, self.dlq)


@dataclass(frozen=True)
class Settings:
    # --- where the cluster is -------------------------------------------------------------
    bootstrap_servers: str = ""  # empty: launch the embedded broker
    kafka_version: str = "4.1.1"
    kafka_home: Path = REPO_ROOT / ".kafka"
    broker_heap_mb: int = 512

    # --- security (passed to every client: Faust, aiokafka, confluent-kafka) ---------------
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str = ""  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_key_password: str = field(default="", repr=False)

    # --- the app ----------------------------------------------------------------------------
    app_id: str = "agentstream"
    scenario: str = "risk"
    topic_prefix: str = ""
    partitions: int = 4
    replication_factor: int = 1
    data_dir: Path = REPO_ROOT / ".agentstream"  # one per worker process: RocksDB locks its files
    metrics_dir: str = ""  # where workers write their counters; default <data_dir>/<app_id>
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    processing_guarantee: str = "at_least_once"  # or exactly_once
    session_timeout_s: float = 10.0
    heartbeat_interval_s: float = 1.0

    # --- the decide path --------------------------------------------------------------------
    batch_size: int = 1000
    batch_within_s: float = 0.02
    producer_linger_ms: int = 5
    producer_compression: str = "lz4"  # librdkafka clients (publishers): compression runs in C threads
    # The worker's aiokafka producer compresses on the event loop: lz4 there cost 36% of a worker's
    # CPU in the profile (perf/RESULTS.md). Uncompressed on a LAN; set lz4 where bandwidth is dear.
    worker_compression: str = "none"
    producer_acks: str = "all"
    producer_max_batch_bytes: int = 1_048_576
    # How long the broker may hold a fetch with no new records. aiokafka sends no new fetch to a
    # broker while one is in flight, so a partition whose records were just handled can wait this
    # long for its next ones; Faust hard-codes 1,500 ms.
    fetch_max_wait_ms: int = 100
    # Young collections every this many net allocations (Python: 700), the start-up heap frozen out
    # of the scans (streams/gcpolicy.py); 0 keeps Python's defaults.
    gc_gen0_threshold: int = 50_000

    # --- decision and learning ----------------------------------------------------------------
    policy: str = "qtable"  # qtable | softmax | thompson | rules
    epsilon: float = 0.02
    temperature: float = 50.0
    learning_rate: float = 0.01  # floor of the step size: sample average for the first 100 updates
    discount: float = 0.0
    pending_ttl_s: float = 86_400.0  # event-time seconds a decision waits for its feedback
    early_outcome_ttl_s: float = 600.0  # wall-clock seconds an outcome waits for its decision
    # How long the learner remembers a decision it applied (to recognise it sent again after a
    # crash), in wall-clock AND event time: repeats come within a restart, not hours later.
    learned_ttl_s: float = 3_600.0

    # --- risk costs -------------------------------------------------------------------------
    review_fee: float = 5.0
    friction_cost: float = 20.0

    def __post_init__(self) -> None:
        for name in ("kafka_home", "data_dir"):  # accept str from overrides and the environment
            object.__setattr__(self, name, Path(getattr(self, name)))

    def topics(self, scenario: str | None = None) -> Topics:
        base = f"{self.topic_prefix}{scenario or self.scenario}"
        return Topics(
            events=f"{base}.events",
            actions=f"{base}.actions",
            feedback=f"{base}.feedback",
            learning=f"{base}.learning",
            dlq=f"{base}.dlq",
        )

    @property
    def metrics_path(self) -> Path:
        return Path(self.metrics_dir) if self.metrics_dir else self.data_dir / self.app_id

    @property
    def embedded(self) -> bool:
        return not self.bootstrap_servers

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)

    # --- client configurations --------------------------------------------------------------
    def confluent_config(self, **extra: object) -> dict[str, object]:
        """librdkafka configuration (confluent-kafka producers, consumers, admin)."""
        conf: dict[str, object] = {"bootstrap.servers": self.bootstrap_servers}
        conf["security.protocol"] = self.security_protocol.lower()
        if self.sasl_mechanism:
            conf |= {
                "sasl.mechanism": self.sasl_mechanism,
                "sasl.username": self.sasl_username,
                "sasl.password": self.sasl_password,
            }
        for key, value in (
            ("ssl.ca.location", self.ssl_cafile),
            ("ssl.certificate.location", self.ssl_certfile),
            ("ssl.key.location", self.ssl_keyfile),
            ("ssl.key.password", self.ssl_key_password),
        ):
            if value:
                conf[key] = value
        conf.update(extra)
        return conf

    def producer_config(self, **extra: object) -> dict[str, object]:
        """A throughput producer: batches of up to 1 MiB, lz4, acks=all with idempotence.

        lz4 costs little CPU and shrinks JSON about 3x; acks=all + idempotence keeps ordering and
        no duplicates across retries, which the at-least-once guarantee builds on.
        """
        return self.confluent_config(
            **{
                "linger.ms": self.producer_linger_ms,
                "compression.type": self.producer_compression,
                "acks": self.producer_acks,
                "enable.idempotence": self.producer_acks == "all",
                "batch.size": self.producer_max_batch_bytes,
                "queue.buffering.max.messages": 1_000_000,
                **extra,
            }
        )

    def faust_broker_credentials(self) -> object | None:
        """Faust/aiokafka credentials, or None for PLAINTEXT."""
        import ssl

        from faust.auth import SASLCredentials, SSLCredentials

        context = None
        if self.security_protocol.upper() in {"SSL", "SASL_SSL"}:
            context = ssl.create_default_context(cafile=self.ssl_cafile or None)
            if self.ssl_certfile:
                context.load_cert_chain(
                    self.ssl_certfile, self.ssl_keyfile or None, self.ssl_key_password or None
                )
        if self.sasl_mechanism:
            return SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                mechanism=self.sasl_mechanism,
                ssl_context=context,
            )
        if context is not None:
            return SSLCredentials(context)
        return None

    def public_dict(self) -> dict[str, object]:
        """The settings with secrets masked: safe to log or print."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = "***" if f.name in SECRET_FIELDS and value else str(value)
        return out


def _coerce(raw: str, annotation: object) -> object:
    hint = typing.get_type_hints(Settings).get(annotation) if isinstance(annotation, str) else annotation
    if isinstance(hint, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if hint in (int, float, Path, str):
        return hint(raw)
    raise TypeError(f"unsupported settings type {hint!r}")


def load_settings(env: typing.Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from defaults, then the environment, then explicit overrides (highest)."""
    env = os.environ if env is None else env
    hints = typing.get_type_hints(Settings)
    values: dict[str, object] = {}
    if env.get("KAFKA_BOOTSTRAP_SERVERS"):
        values["bootstrap_servers"] = env["KAFKA_BOOTSTRAP_SERVERS"]
    for f in dataclasses.fields(Settings):
        raw = env.get(ENV_PREFIX + f.name.upper())
        if raw is not None:
            try:
                values[f.name] = _coerce(raw, hints[f.name])
            except ValueError as exc:
                raise ValueError(f"{ENV_PREFIX}{f.name.upper()}={raw!r}: {exc}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
