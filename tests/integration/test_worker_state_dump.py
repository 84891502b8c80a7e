"""SIGUSR2 makes a running worker log its asyncio tasks' await chains and its partitions' consumer
state and its producer's (mode's default opens a debugger on stdin), and the worker carries on."""

from __future__ import annotations

import signal
import time

from connectors.admin import ensure_topics
from connectors.collect import wait_for
from streams.settings import Settings
from tests.integration.harness import workers


def test_sigusr2_logs_tasks_and_partition_positions(settings: Settings) -> None:
    ensure_topics(settings, settings.topics().all())
    with workers(settings, 1) as fleet:
        proc = fleet.procs[0]
        proc.send_signal(signal.SIGUSR2)
        log = fleet.log(0)
        assert wait_for(lambda: "in flight to brokers:" in log.read_text(errors="replace"), 10, 0.2)
        time.sleep(0.5)
        text = log.read_text(errors="replace")
        events = settings.topics().events
        assert "asyncio tasks:" in text and "in _drain_messages" in text
        assert f"{events}-0: position=" in text
        assert "muted partitions: []" in text  # the producer's state: nothing stuck in an idle worker
        assert proc.poll() is None, "the worker must keep running"
