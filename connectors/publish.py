"""Publishing records to Kafka: from the generator, from JSONL/CSV files, at a target rate.

confluent-kafka's default partitioner hashes keys with CRC32, Java clients and aiokafka (Faust)
with murmur2: records keyed here must land where Faust puts the same key (events, feedback and
tables are co-partitioned), so every producer here uses `murmur2_random`.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from confluent_kafka import KafkaError, Producer

from streams.settings import Settings

Progress = Callable[[int], None]


class DeliveryError(RuntimeError):
    """Some records could not be delivered; nothing is dropped silently."""


@dataclass
class PublishResult:
    sent: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


class Publisher:
    """A keyed producer that paces itself and counts delivery failures."""

    def __init__(self, settings: Settings, **overrides: object) -> None:
        self.producer = Producer(
            settings.producer_config(partitioner="murmur2_random", log_level=3, **overrides)
        )
        self.result = PublishResult()

    def _delivered(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self.result.failed += 1
            if len(self.result.errors) < 20:
                self.result.errors.append(str(err))

    def send(self, topic: str, key: bytes | str | None, value: bytes, headers: object = None) -> None:
        while True:
            try:
                self.producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=self._delivered
                )
                break
            except BufferError:  # local queue full: let the producer drain, then retry
                self.producer.poll(0.05)
        self.result.sent += 1

    def publish(
        self,
        records: Iterable[tuple[str, bytes | str | None, bytes]],
        rate: float = 0.0,
        progress: Progress | None = None,
    ) -> PublishResult:
        """Send (topic, key, value) records; `rate` > 0 paces them (records/s) on a schedule."""
        start = time.perf_counter()
        for i, (topic, key, value) in enumerate(records):
            if rate > 0:
                wait = start + i / rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            self.send(topic, key, value)
            if i % 1000 == 0:
                self.producer.poll(0)
                if progress is not None:
                    progress(i)
        self.flush()
        self.result.seconds = time.perf_counter() - start
        if progress is not None:
            progress(self.result.sent)
        return self.result

    def flush(self, timeout_s: float = 60.0) -> None:
        remaining = self.producer.flush(timeout_s)
        if remaining:
            raise DeliveryError(f"{remaining} records still undelivered after {timeout_s}s")
        if self.result.failed:
            raise DeliveryError(f"{self.result.failed} records failed: {'; '.join(self.result.errors[:5])}")


@dataclass
class BadLine:
    line: int
    reason: str


def read_records(path: Path, key_field: str | None, bad: list[BadLine]) -> Iterator[tuple[str | None, bytes]]:
    """(key, JSON value) per line of a .jsonl or .csv file; bad lines are appended to `bad`."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as fh:
            for line_no, row in enumerate(csv.DictReader(fh), start=2):
                if None in row or any(v is None for v in row.values()):
                    bad.append(BadLine(line_no, "wrong number of columns"))
                    continue
                yield _keyed(_typed(row), key_field, line_no, bad)
        return
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                bad.append(BadLine(line_no, f"invalid JSON: {exc}"))
                continue
            if not isinstance(record, dict):
                bad.append(BadLine(line_no, "not a JSON object"))
                continue
            yield _keyed(record, key_field, line_no, bad)


def _keyed(record: dict[str, object], key_field: str | None, line_no: int, bad: list[BadLine]):
    if key_field is None:
        return None, orjson.dumps(record)
    key = record.get(key_field)
    if key is None or key == "":
        bad.append(BadLine(line_no, f"missing key field {key_field!r}"))
        return _SKIP
    return str(key), orjson.dumps(record)


_SKIP = ("\0skip", b"")


def _typed(row: dict[str, str]) -> dict[str, object]:
    """CSV cells are text: numbers become numbers so the JSON matches the topic's contract."""
    out: dict[str, object] = {}
    for k, v in row.items():
        try:
            out[k] = int(v) if v.lstrip("-").isdigit() else float(v)
        except ValueError:
            out[k] = v
    return out


def publish_file(
    settings: Settings, topic: str, path: Path, key_field: str | None, progress: Progress | None = None
) -> tuple[PublishResult, list[BadLine]]:
    bad: list[BadLine] = []
    records = ((topic, key, value) for key, value in read_records(path, key_field, bad) if key != _SKIP[0])
    result = Publisher(settings).publish(records, progress=progress)
    return result, bad
