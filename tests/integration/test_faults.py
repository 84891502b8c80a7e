"""Fault injection on the real embedded Kafka: nothing lost, nothing applied twice.

Each test runs workers in child processes under a steady generated load (transactions and their
labels), injects a fault mid-run (SIGKILL or SIGTERM of a worker, deletion of its RocksDB, SIGKILL
of a broker), and then audits what reached Kafka (harness.audit): every event has an action and one
decision, each account's state equals a from-scratch recomputation, every label was learned once.
The counts are printed (run with -s) for the reliability report.
"""

from __future__ import annotations

import shutil
import signal
import time

import pytest

from connectors.admin import ensure_topics
from connectors.broker import EmbeddedKafka
from connectors.collect import wait_for
from streams.settings import Settings
from tests.integration.harness import Audit, Fleet, Traffic, audit, owners, workers

pytestmark = pytest.mark.integration


def report(name: str, result: Audit) -> None:
    print(f"\n{name}: {result.line()}; counters {result.counters}")


def test_sigkill_and_sigterm_of_workers_under_load(settings: Settings) -> None:
    """Two workers share the partitions; one is SIGKILLed and restarted, then the other is SIGTERMed
    and restarted, all while the generator publishes (~750 events/s with labels)."""
    ensure_topics(settings, settings.topics().all())
    traffic = Traffic(settings, events=36_000, rate=1_500)  # 24 s: outlasts both faults on a slow day
    with workers(settings, 2) as fleet:
        traffic.start()
        assert wait_for(lambda: traffic.progress() > 3_000, 30)
        fleet.stop(0, signal.SIGKILL)
        time.sleep(2)
        fleet.restart(0)
        fleet.stop(1, signal.SIGTERM)
        fleet.restart(1)
        assert traffic.is_alive(), "the faults must happen under load: publish more events"
        result = audit(settings, traffic.finish(), traffic.label_ids)
    report("SIGKILL + SIGTERM of workers", result)
    assert result.lost == 0


def test_sigterm_hands_partitions_over_at_once(settings: Settings) -> None:
    """SIGTERM: in-flight batches finish, offsets are committed, the group is left. With a 30 s session
    timeout the survivor must own every partition within seconds (no wait for the timeout) and
    redeliver nothing (everything the stopped worker processed was committed)."""
    settings = settings.with_overrides(session_timeout_s=30.0)
    ensure_topics(settings, settings.topics().all())
    traffic = Traffic(settings, events=8_000, rate=1_500)
    with workers(settings, 2) as fleet:
        traffic.start()
        assert wait_for(lambda: traffic.progress() > 2_000, 30)
        stopped = time.monotonic()
        assert fleet.stop(1, signal.SIGTERM) == 0
        exit_s = time.monotonic() - stopped
        assert wait_for(lambda: owners(settings) == [set(range(settings.partitions))], 10, 0.1)
        handover_s = time.monotonic() - stopped
        assert traffic.is_alive()
        result = audit(settings, traffic.finish(), traffic.label_ids)
        snapshot = fleet.snapshot(0)
        commits = fleet.grep("final commit")
    survivor = snapshot["counts"]
    report(f"SIGTERM (exit {exit_s:.1f} s, partitions handed over in {handover_s:.1f} s)", result)
    assert handover_s < 8.0
    # where the survivor handled records twice (partition: offsets, the committed offset it started
    # from, whether it was its own partition), and what each worker committed at its revocations
    # and at the shutdown
    assert survivor.get("redelivered", 0) == 0, f"{survivor}\n{snapshot.get('redeliveries')}\n{commits}"


def test_state_recovers_from_the_changelog_with_rocksdb_intact_and_deleted(settings: Settings) -> None:
    """One worker, SIGKILLed under load twice: restarted once with its RocksDB directory intact, once
    with it deleted. Its state must come back from the changelog both times: the load continues on
    the same accounts, so any lost or doubled update shows in the recomputation."""
    ensure_topics(settings, settings.topics().all())
    traffic = Traffic(settings, events=30_000, rate=1_500)  # 40 s: outlasts both restarts
    fleet = Fleet(settings)
    try:
        fleet.start(0)
        fleet.wait_ready()
        traffic.start()
        assert wait_for(lambda: traffic.progress() > 3_000, 30)
        fleet.stop(0, signal.SIGKILL)
        intact_s = fleet.restart(0)
        assert wait_for(lambda: traffic.progress() > 9_000, 30)
        fleet.stop(0, signal.SIGKILL)
        shutil.rmtree(fleet.state_dir(0))
        deleted_s = fleet.restart(0)
        assert traffic.is_alive()
        result = audit(settings, traffic.finish(), traffic.label_ids)
    except BaseException:
        fleet.show_failure()
        raise
    finally:
        fleet.close()
    report(f"restart with RocksDB intact ({intact_s:.1f} s) and deleted ({deleted_s:.1f} s)", result)


def test_exactly_once_mode_commits_one_action_per_event(settings: Settings) -> None:
    """processing_guarantee=exactly_once: a read_committed reader sees exactly one action per event,
    also when the worker is SIGKILLed mid-run (its open transactions are aborted) and restarted."""
    settings = settings.with_overrides(processing_guarantee="exactly_once")
    ensure_topics(settings, settings.topics().all())
    traffic = Traffic(settings, events=6_000, rate=1_000)
    with workers(settings, 1) as fleet:
        traffic.start()
        assert wait_for(lambda: traffic.progress() > 2_000, 30)
        fleet.stop(0, signal.SIGKILL)
        fleet.restart(0)
        result = audit(settings, traffic.finish(), traffic.label_ids, markers=True)
    report("exactly-once, SIGKILL + restart", result)
    assert result.actions == result.events and result.duplicates == 0


def test_three_broker_cluster_survives_a_broker_kill(settings: Settings) -> None:
    """Replication factor 3, min.insync.replicas 2: SIGKILL one of three brokers mid-run; the
    pipeline carries on (acks=all still succeeds with two in-sync replicas)."""
    with EmbeddedKafka(brokers=3, settings=settings) as cluster:
        settings = settings.with_overrides(bootstrap_servers=cluster.bootstrap, replication_factor=3)
        ensure_topics(settings, settings.topics().all())
        traffic = Traffic(settings, events=10_000, rate=1_500)
        with workers(settings, 2, timeout_s=120):
            traffic.start()
            assert wait_for(lambda: traffic.progress() > 3_000, 30)
            cluster.kill(2)
            assert traffic.is_alive()
            result = audit(settings, traffic.finish(), traffic.label_ids)
    report("3 brokers, one SIGKILLed", result)
