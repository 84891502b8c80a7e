"""Test helpers: workers in child processes that are always stopped, and topic readers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from subprocess import Popen

from connectors.collect import collect_values, wait_for
from connectors.process import spawn_worker, stop
from streams.codecs import loads
from streams.demo import worker_env
from streams.metrics import read_all, read_snapshots
from streams.settings import Settings


def metrics_dir(settings: Settings) -> Path:
    return settings.metrics_path


@contextlib.contextmanager
def workers(settings: Settings, n: int = 1, timeout_s: float = 90.0) -> Iterator[list[Popen[bytes]]]:
    """Start n workers and wait until every one has partitions and recovered tables."""
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[Popen[bytes]] = []
    try:
        for i in range(n):
            env = worker_env(settings) | {
                "AGENTSTREAM_DATA_DIR": str(settings.data_dir / f"worker-{i}"),
                "AGENTSTREAM_METRICS_DIR": str(settings.metrics_path),
            }
            procs.append(spawn_worker(env, logs / f"worker-{i}.log"))
        ok = wait_for(lambda: _all_ready(settings, procs), timeout_s, 0.5)
        assert ok, f"workers not ready in {timeout_s}s: {_tails(logs)}"
        yield procs
    finally:
        for proc in procs:
            stop(proc)


def _all_ready(settings: Settings, procs: list[Popen[bytes]]) -> bool:
    for proc in procs:
        assert proc.poll() is None, f"worker exited with {proc.returncode}"
    live = {p.pid for p in procs}
    snaps = [s for s in read_snapshots(metrics_dir(settings)) if s.get("pid") in live]
    return len(snaps) == len(procs) and all(s.get("ready") for s in snaps)


def _tails(logs: Path) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(logs.glob("*.log"))
    )


def counts(settings: Settings) -> dict[str, int]:
    return read_all(metrics_dir(settings))


def topic_json(settings: Settings, topic: str) -> list[dict]:
    return collect_values(settings, topic, loads)
