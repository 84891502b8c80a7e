"""`agentstream bench`: the same workload through every implementation, in one session, on one broker.

Order of a bench session:
1. generate the workload (fixed seed) and pre-load it into `<prefix>risk.events`;
2. throughput runs: each implementation reads that topic from the beginning with its own group, the
   implementations interleaved run by run (rotated), so slow drifts of a shared machine hit every
   one alike; median, min and max over the runs;
3. optionally a profiled extra run of ours (py-spy attached once actions flow);
4. ours, one worker, on fresh topics, started and ready first: the workload is published as fast as
   possible into it (1-worker burst rate, the scaling baseline), then the open-loop latency sweep;
5. ours, two workers on the same partitions: the same burst (2-worker rate), then learning lag;
6. the queueing model against the latency sweep.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import tempfile
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rich.console import Console

from connectors.broker import kafka_cluster
from perf.implementations import IMPLEMENTATIONS, Context, missing_package, ours_deployment, run_spec
from perf.latency import LevelResult, run_levels
from perf.learning_lag import measure_learning_lag
from perf.profile import top_frames
from perf.readback import OutputWatch
from perf.throughput import RunResult, measure, processing_window
from perf.validation import compare
from perf.workload import Workload, load
from streams.progress import progress_bar
from streams.settings import Settings

LEVELS = (0.25, 0.5, 0.75, 0.9)


@dataclass
class BenchConfig:
    events: int = 100_000
    partitions: int = 4
    runs: int = 3
    seed: int = 42
    only: tuple[str, ...] = IMPLEMENTATIONS
    levels: tuple[float, ...] = LEVELS
    level_seconds: float = 6.0
    lag_trials: int = 30
    profile: bool = False
    out: Path | None = None
    keep_workdir: bool = False  # keep the workers' logs and state (debugging)

    @classmethod
    def quick(cls, **changes: Any) -> BenchConfig:
        """A sanity run in under 3 minutes: every implementation once, on a small workload."""
        return cls(**{"events": 10_000, "runs": 1, "level_seconds": 3.0, "lag_trials": 5, **changes})

    def public(self) -> dict[str, Any]:
        return {f.name: str(v) if isinstance(v := getattr(self, f.name), Path) else v for f in fields(self)}


@dataclass
class Session:
    """What one bench session measured (turned into the JSON summary by `summary`)."""

    cfg: BenchConfig
    runs: dict[str, list[RunResult]] = field(default_factory=dict)
    profile: dict[str, Any] | None = None
    burst_eps: dict[int, float | None] = field(default_factory=dict)  # workers -> events/s
    levels: list[LevelResult] = field(default_factory=list)
    learning_lag: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem_kb = next(
        (int(line.split()[1]) for line in _read("/proc/meminfo").splitlines() if line.startswith("MemTotal")),
        0,
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def run_bench(settings: Settings, cfg: BenchConfig, console: Console) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    workdir = Path(tempfile.mkdtemp(prefix="agentstream-bench-"))
    try:
        with kafka_cluster(settings, log=console.print) as bootstrap:
            s = settings.with_overrides(
                bootstrap_servers=bootstrap,
                scenario="risk",
                topic_prefix=f"bench{run}-",
                partitions=cfg.partitions,
                session_timeout_s=6.0,
                heartbeat_interval_s=0.5,
                data_dir=workdir,
            )
            session = Session(cfg)
            _run(s, session, console, workdir)
            return summary(session, s)
    finally:
        if cfg.keep_workdir:
            console.print(f"logs and state kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(s: Settings, session: Session, console: Console, workdir: Path) -> None:
    cfg = session.cfg
    console.print(f"generating {cfg.events:,} risk events (seed {cfg.seed}) ...")
    workload = Workload.generate(cfg.events, cfg.seed)
    loaded = load(s, s.topics().events, workload, cfg.partitions)
    console.print(f"pre-loaded {loaded.sent:,} events into {s.topics().events} ({cfg.partitions} partitions)")
    ctx = Context(s, workdir)
    names = [n for n in IMPLEMENTATIONS if n in cfg.only]
    for r in range(cfg.runs):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            session.runs.setdefault(name, []).append(
                _throughput_run(ctx, name, f"{name}-{r}", len(workload), console)
            )
    if "ours" not in names:
        return
    if cfg.profile:
        session.profile = _profile(ctx, len(workload), cfg, console)
    max_rate = _median([r.eps for r in session.runs["ours"]])
    if max_rate is None:
        session.errors.append("ours produced no throughput: no latency, scaling or learning-lag runs")
        return
    base = s.with_overrides(topic_prefix=f"{s.topic_prefix}one-")
    with ours_deployment(base, workdir / "one", "one", workers=1) as (one, _procs):
        session.burst_eps[1] = _burst(one, workload, cfg.partitions, console, "1 worker")
        session.levels = run_levels(one, cfg.levels, max_rate, cfg.level_seconds, cfg.seed + 1, console.print)
    base = s.with_overrides(topic_prefix=f"{s.topic_prefix}two-")
    with ours_deployment(base, workdir / "two", "two", workers=2) as (two, _procs):
        session.burst_eps[2] = _burst(two, workload, cfg.partitions, console, "2 workers")
        session.learning_lag = measure_learning_lag(two, cfg.lag_trials, console.print)


def _throughput_run(ctx: Context, name: str, run_id: str, n: int, console: Console) -> RunResult:
    missing = missing_package(name)
    if missing is not None:
        return RunResult(name, error=f"{missing} is not installed (pip install -e '.[bench]')")
    spec = run_spec(ctx, name, run_id)
    with progress_bar(f"{name:<12} {run_id}", total=n) as advance:
        result = measure(spec, ctx.settings, n, timeout_s=120.0 + n / 300.0, on_progress=advance)
    if result.error:
        console.print(f"[red]{name}: {result.error}[/red] (logs in {ctx.workdir})")
    else:
        console.print(
            f"{name:<12} {result.eps:>10,.0f} events/s  {result.cpu_s_per_1k:.3f} CPU s/1k  "
            f"peak RSS {result.peak_rss_mb:,.0f} MB"
        )
    return result


def _profile(ctx: Context, n: int, cfg: BenchConfig, console: Console) -> dict[str, Any]:
    out = (cfg.out or ctx.workdir) / "profile-ours.txt"
    spec = run_spec(ctx, "ours", "ours-profile")
    console.print("profiling ours with py-spy (an extra run, not counted) ...")
    result = measure(spec, ctx.settings, n, timeout_s=120.0 + n / 300.0, profile_to=out)
    if not out.exists():
        return {"error": result.error or "py-spy wrote no profile"}
    return {"file": str(out), "eps_while_profiled": result.eps, **top_frames(out)}


def _burst(s: Settings, workload: Workload, partitions: int, console: Console, label: str) -> float | None:
    """Publish the workload as fast as possible into running, ready workers; their steady rate."""
    watch = OutputWatch(s, s.topics().actions)
    try:
        load(s, s.topics().events, workload, partitions)
        if not watch.wait(len(workload), timeout_s=120.0 + len(workload) / 1000.0):
            console.print(f"[red]burst ({label}): only {watch.count()} of {len(workload)} actions[/red]")
            return None
        records = watch.read(values=True)
    finally:
        watch.close()
    window = processing_window(records)
    eps = round(len(records) / (window[1] - window[0]), 1) if window else None
    console.print(f"ours, {label}, workers ready then burst: {eps or 0:,.0f} events/s")
    return eps


def _median(values: list[float | None], digits: int = 1) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), digits) if present else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def summary(session: Session, s: Settings) -> dict[str, Any]:
    throughput = {}
    for name, results in session.runs.items():
        eps = [r.eps for r in results if r.eps is not None]
        throughput[name] = {
            "median": _median(eps),
            "min": min(eps, default=None),
            "max": max(eps, default=None),
            "cpu_s_per_1k": _median([r.cpu_s_per_1k for r in results], digits=4),
            "peak_rss_mb": max((r.peak_rss_mb for r in results if r.peak_rss_mb), default=None),
            "runs": [r.to_dict() for r in results],
        }
    eps_of = {name: throughput.get(name, {}).get("median") for name in IMPLEMENTATIONS}
    one, two = session.burst_eps.get(1), session.burst_eps.get(2)
    ours = eps_of["ours"]
    return {
        "ours_eps": ours,
        "plain_faust_eps": eps_of["plain_faust"],
        "quix_eps": eps_of["quix"],
        "raw_eps": eps_of["raw"],
        "ratios": {f"ours/{n}": _ratio(ours, eps_of[n]) for n in IMPLEMENTATIONS if n != "ours"},
        "latency_ms": {
            f"{lv.level:.0%}": {"rate": lv.rate, "mean": lv.mean_ms, **lv.latency_ms} for lv in session.levels
        },
        "learning_lag_ms": session.learning_lag,
        "scale_2_workers": {"eps_1_worker": one, "eps_2_workers": two, "speedup": _ratio(two, one)}
        if session.burst_eps
        else None,
        "throughput": throughput,
        "levels": [lv.to_dict() for lv in session.levels],
        "validation": compare(session.levels, ours) if ours and session.levels else None,
        "profile": session.profile,
        "errors": session.errors,
        "config": {
            **session.cfg.public(),
            "producer": {
                "linger_ms": s.producer_linger_ms,
                "compression": s.producer_compression,
                "acks": s.producer_acks,
            },
        },
        "machine": machine(),
    }
