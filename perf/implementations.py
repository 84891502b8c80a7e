"""How each implementation is started for one run: its output topic and its child processes.

Ours is the shipped worker (`python -m streams.cli worker`, policy qtable) reading the workload
topic as its scenario's events topic (`<topic_prefix>risk.events`); the peers are the modules in
`perf/peers`, each given the same topic. Every run gets a fresh group / app id and state folder,
so every run reads the workload from its beginning with cold state.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

from connectors.admin import ensure_topics
from connectors.broker import free_port
from connectors.collect import wait_for
from connectors.process import spawn, spawn_worker, stop
from perf.peers.common import PeerConfig
from streams.demo import worker_env
from streams.metrics import read_snapshots
from streams.settings import Settings

IMPLEMENTATIONS = ("ours", "plain_faust", "quix", "raw")
PEER_MODULES = {
    "plain_faust": "perf.peers.plain_faust",
    "quix": "perf.peers.quix",
    "raw": "perf.peers.raw_loop",
}
NEEDS = {"quix": "quixstreams"}  # optional packages (the `bench` extra)


@dataclass(frozen=True)
class Context:
    """One bench session: the settings of the workload (bootstrap, topic prefix) and a scratch dir."""

    settings: Settings
    workdir: Path

    @property
    def source(self) -> str:
        return self.settings.topics().events


@dataclass(frozen=True)
class RunSpec:
    name: str
    sink: str  # the topic its actions go to
    start: Callable[[], list[Popen[bytes]]]


def missing_package(name: str) -> str | None:
    """The optional package an implementation needs and this environment lacks, if any."""
    package = NEEDS.get(name)
    return package if package and importlib.util.find_spec(package) is None else None


def run_spec(ctx: Context, name: str, run_id: str, workers: int = 1) -> RunSpec:
    if name == "ours":
        s = ours_settings(ctx.settings, ctx.workdir / run_id, run_id)
        ensure_topics(s, s.topics().all())
        return RunSpec(name, s.topics().actions, lambda: start_ours(s, workers))
    cfg = PeerConfig(
        bootstrap=ctx.settings.bootstrap_servers,
        source=ctx.source,
        sink=f"{ctx.settings.topic_prefix}{name}.{run_id}.actions",
        group=f"bench-{name}-{run_id}",
        partitions=ctx.settings.partitions,
        state_dir=str(ctx.workdir / run_id / "state"),
        policy="qtable",
        epsilon=ctx.settings.epsilon,
        web_port=free_port(),
    )
    ensure_topics(ctx.settings, [cfg.sink])
    Path(cfg.state_dir).mkdir(parents=True, exist_ok=True)
    log = ctx.workdir / f"{run_id}.log"
    return RunSpec(
        name,
        cfg.sink,
        lambda: [spawn([sys.executable, "-m", PEER_MODULES[name], cfg.to_arg()], dict(os.environ), log)],
    )


def ours_settings(base: Settings, workdir: Path, run_id: str) -> Settings:
    return base.with_overrides(
        app_id=f"bench-ours-{run_id}",
        data_dir=workdir,
        metrics_dir=str(workdir / "metrics"),
        policy="qtable",
        web_port=free_port(),
    )


def start_ours(s: Settings, workers: int) -> list[Popen[bytes]]:
    s.data_dir.mkdir(parents=True, exist_ok=True)
    return [
        spawn_worker(
            worker_env(s)
            | {
                "AGENTSTREAM_DATA_DIR": str(s.data_dir / f"worker-{i}"),
                "AGENTSTREAM_WEB_PORT": str(free_port()),
            },
            s.data_dir / f"worker-{i}.log",
        )
        for i in range(workers)
    ]


def stop_all(procs: list[Popen[bytes]]) -> None:
    for proc in procs:
        stop(proc, timeout_s=15.0)


@contextlib.contextmanager
def ours_deployment(
    base: Settings, workdir: Path, run_id: str, workers: int, ready_timeout_s: float = 120.0
) -> Iterator[tuple[Settings, list[Popen[bytes]]]]:
    """`workers` worker processes of ours on fresh topics, yielded once every one is ready
    (partitions assigned, tables recovered): for measurements that must not include start-up."""
    s = ours_settings(base, workdir, run_id)
    ensure_topics(s, s.topics().all())
    procs = start_ours(s, workers)
    try:
        if not wait_for(lambda: workers_ready(s, procs), ready_timeout_s, 0.25):
            raise RuntimeError(
                f"ours: {workers} worker(s) not ready in {ready_timeout_s}s; logs in {workdir}"
            )
        yield s, procs
    finally:
        stop_all(procs)


def workers_ready(s: Settings, procs: list[Popen[bytes]]) -> bool:
    """Every process of `procs` reported ready (partitions assigned, tables recovered); raises if one
    exited."""
    for proc in procs:
        if proc.poll() is not None:
            raise RuntimeError(f"an ours worker exited during start-up (code {proc.returncode})")
    live = {p.pid for p in procs}
    snaps = [snap for snap in read_snapshots(s.metrics_path) if snap.get("pid") in live]
    return len(snaps) == len(procs) and all(snap.get("ready") for snap in snaps)
