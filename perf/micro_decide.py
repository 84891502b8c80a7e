"""The decide agent's own cost per event, in process, without Kafka or Faust's consumer.

Runs the shipped `Decider` over pre-built messages with stand-ins for the tables (a dict where
RocksDB would be) and reports microseconds per event plus a profile, so the agent's code can be
tuned apart from the network and the broker. Usage:

    python -m perf.micro_decide --events 100000 [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rocksdict import Options, Rdict

from connectors.generate import RiskGenerator
from streams.agents.decide import Decider
from streams.agents.views import PartitionSum
from streams.app import Pipeline
from streams.core.policies import make_policy
from streams.scenarios import build_scenario
from streams.settings import load_settings


class _Store:
    """RocksDB as the worker has it (a database per partition, the outbox's batched puts), without
    Faust's store around it."""

    def __init__(self, name: str, partitions: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"micro-{name}-"))
        self._dbs: dict[int, Rdict] = {}
        self._key_index: dict[bytes, int] = {}
        for partition in range(partitions):  # opened before the clock starts, as a worker's are
            self._db_for_partition(partition)

    def _db_for_partition(self, partition: int) -> Rdict:
        db = self._dbs.get(partition)
        if db is None:
            db = self._dbs[partition] = Rdict(str(self.root / str(partition)), Options(raw_mode=True))
        return db

    def _get(self, key: bytes) -> bytes | None:
        partition = self._key_index.get(key)
        return None if partition is None else self._dbs[partition].get(key)

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()
        shutil.rmtree(self.root, ignore_errors=True)


class _Table:
    def __init__(self, name: str, partitions: int, rocksdb: bool = True) -> None:
        """RocksDB, or (the GlobalTables) Faust's memory store: a dict in `data.data`."""
        self.data: Any = _Store(name, partitions) if rocksdb else SimpleNamespace(data={})
        self.changelog_topic_name = f"{name}-changelog"


class _Topic:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


class _App:
    conf = SimpleNamespace(processing_guarantee=SimpleNamespace(value="at_least_once"))

    class on_partitions_revoked:
        @staticmethod
        def connect(fn: Any) -> Any:
            return fn


def _message(partition: int, offset: int, key: str, value: bytes) -> Any:
    return SimpleNamespace(partition=partition, offset=offset, key=key.encode(), value=value,
                           timestamp=time.time(), topic="risk.events")  # fmt: skip


def build(settings: Any) -> Pipeline:
    n = settings.partitions
    stats = _Table("outcome_stats", n, rocksdb=False)
    scenario = build_scenario(settings, PartitionSum(stats, settings.partitions))
    policy = make_policy(settings.policy, scenario.actions, scenario.baseline,
                         epsilon=settings.epsilon, temperature=settings.temperature)  # fmt: skip
    topics = {name: _Topic(name) for name in settings.topics().all()}
    names = settings.topics()
    return Pipeline(
        settings=settings, app=_App(), names=names, scenario=scenario, policy=policy,  # type: ignore[arg-type]
        events=topics[names.events], feedback=topics[names.feedback], actions=topics[names.actions],
        learning=topics[names.learning], dlq=topics[names.dlq], entities=_Table("entities", n),
        pending=_Table("pending", n), decisions=_Table("decisions", n, rocksdb=False), outcome_stats=stats,
        learned=_Table("learned", n),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    settings = load_settings(bootstrap_servers="unused:9092")
    pipeline = build(settings)
    from connectors.partitioning import partition_for

    messages, offsets = [], [0] * settings.partitions
    for rec in RiskGenerator(7).records(args.events * 2):
        if rec.kind == "event" and len(messages) < args.events:
            part = partition_for(rec.key.encode(), settings.partitions)
            messages.append(_message(part, offsets[part], rec.key, rec.value))
            offsets[part] += 1
    decider = Decider(pipeline)
    batches = [messages[i : i + args.batch] for i in range(0, len(messages), args.batch)]

    def run() -> None:
        for batch in batches:
            out = decider.run(batch)
            out.store_puts()

    profiler = cProfile.Profile() if args.profile else None
    start = time.perf_counter()
    if profiler:
        profiler.runcall(run)
    else:
        run()
    elapsed = time.perf_counter() - start
    print(f"{len(messages):,} events: {elapsed * 1e6 / len(messages):.1f} us/event, "
          f"{len(messages) / elapsed:,.0f} events/s (one core, no Kafka)")  # fmt: skip
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
