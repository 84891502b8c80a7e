"""`agentstream demo traffic`: fixed time vs max-pressure vs learned signals, over Kafka, on SUMO.

Every policy drives the same simulated demand (one seed, with a rush hour in the middle) through
the same closed loop: SUMO readings -> traffic.events -> worker -> traffic.actions -> signals, and
measurements -> traffic.feedback -> join -> learn -> decision table. The results come from SUMO's
own trip records (tripinfo), not from the agents.

- Each Kafka policy gets its own worker, app id and topic prefix: decision tables never mix.
- The learned policy first trains on other demand seeds with a worker exploring at
  `train_epsilon`; a second worker with the same app id then evaluates at `eval_epsilon` (still
  learning online). Same app id = same decision table: a GlobalTable the new worker recovers from
  its changelog.
- Fixed time is the signal's own program, so the connector applies the plan: a worker policy
  would need every reading to carry its program and would wait on Kafka to decide nothing. The
  readings are still published, so all three runs put the same records on Kafka.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from connectors.broker import kafka_cluster
from connectors.collect import wait_for
from connectors.process import spawn_worker, stop
from connectors.sumo import load_traci
from connectors.sumo_net import NETWORKS, sumo_home
from connectors.traffic_kafka import KafkaLink, run_over_kafka, traffic_settings
from connectors.traffic_loop import LoopResult, training_seed
from streams.demo import worker_env, workers_ready
from streams.metrics import read_all
from streams.quality import percentiles
from streams.settings import Settings

POLICIES = ("fixed_time", "max_pressure", "learned")


@dataclass
class TrafficDemoConfig:
    net: str = "single"  # single | grid2x2
    duration_s: int = 3600  # demand period in simulated seconds (the run then drains the network)
    episodes: int = 5  # training simulations before the learned policy is evaluated
    seed: int = 42  # evaluation demand seed; training uses other seeds
    train_epsilon: float = 0.1
    eval_epsilon: float = 0.02
    step_timeout_s: float = 5.0  # a reading unanswered this long keeps its phase (counted missing)
    ready_timeout_s: float = 120.0
    chart: Path | None = None


@dataclass
class _Ctx:
    settings: Settings  # bootstrap set, app id and data dir of this demo
    cfg: TrafficDemoConfig
    log: Callable[[str], None]
    workdir: Path
    cache_dir: Path


def run_traffic_demo(settings: Settings, cfg: TrafficDemoConfig, console: Console) -> dict[str, Any]:
    """Run the three policies on the embedded broker (or KAFKA_BOOTSTRAP_SERVERS); returns the summary."""
    if cfg.net not in NETWORKS:
        raise ValueError(f"unknown network {cfg.net!r}; valid: {', '.join(sorted(NETWORKS))}")
    sumo_home(), load_traci()  # without the traffic extra, say so before starting a broker
    started = time.perf_counter()
    run_id = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix="agentstream-traffic-"))
    try:
        with kafka_cluster(settings, log=console.print) as bootstrap:
            s = settings.with_overrides(
                bootstrap_servers=bootstrap,
                app_id=f"{settings.app_id}-traffic-{run_id}",
                topic_prefix=f"{settings.topic_prefix}{run_id}.",  # never reuse another run's topics
                data_dir=workdir,
            )
            ctx = _Ctx(s, cfg, console.print, workdir, (settings.data_dir / "sumo").resolve())
            fixed_time = _fixed_time(ctx)
            # Training goes before the measured Kafka runs: the first minute on a fresh broker is
            # slower (JVM warm-up; measured 2-3x the round trip), and training latency matters least.
            training = _train(ctx)
            results = {
                "fixed_time": fixed_time,
                "max_pressure": _max_pressure(ctx),
                "learned": _evaluate_learned(ctx, training),
            }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {
        "net": cfg.net,
        "duration_s": cfg.duration_s,
        "seed": cfg.seed,
        "rush_hour_s": _rush_hour(cfg),
        **results,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    if cfg.chart is not None:
        from streams.traffic_chart import write_queue_chart

        summary["chart"] = str(write_queue_chart(summary, cfg.chart))
    return summary


# --- the three policies -------------------------------------------------------------------------


def _fixed_time(ctx: _Ctx) -> dict[str, Any]:
    s = traffic_settings(ctx.settings, policy="rules", label="fixed_time")
    ctx.log("fixed_time: the signal's own plan, readings published (no worker) ...")
    with KafkaLink(s, timeout_s=ctx.cfg.step_timeout_s) as link:
        result = _run(ctx, link, "fixed_time", ctx.cfg.seed, "eval")
    return _policy_summary(result, "signal plan", updates=0)


def _max_pressure(ctx: _Ctx) -> dict[str, Any]:
    s = traffic_settings(ctx.settings, policy="rules", label="max_pressure")
    with _worker(ctx, s, "max_pressure") as link:
        result = _run(ctx, link, "max_pressure", ctx.cfg.seed, "eval")
        updates = _settled_updates(ctx, "max_pressure", result.extra["feedback"])
    return _policy_summary(result, "worker (rules)", updates)


def _train(ctx: _Ctx) -> dict[str, Any]:
    """The learned policy's training period: `episodes` simulations on demand seeds of their own."""
    cfg = ctx.cfg
    s = traffic_settings(ctx.settings, policy="qtable", label="learned", epsilon=cfg.train_epsilon)
    episodes: list[dict[str, Any]] = []
    started = time.perf_counter()
    with _worker(ctx, s, "learned-train") as link:
        sent = 0
        for i in range(cfg.episodes):
            note = f" {i + 1}/{cfg.episodes}"
            r = _run(ctx, link, "learned", training_seed(cfg.seed, i), f"train{i}", note)
            sent += r.extra["feedback"]
            episodes.append({"seed": r.seed, "avg_wait_s": round(r.summary.avg_wait_s, 2)})
        updates = _settled_updates(ctx, "learned-train", sent)
    return {
        "episodes": episodes,
        "learning_updates": updates,
        "epsilon": cfg.train_epsilon,
        "eval_epsilon": cfg.eval_epsilon,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def _evaluate_learned(ctx: _Ctx, training: dict[str, Any]) -> dict[str, Any]:
    """The trained table (same app id) on the evaluation demand, exploring little, still learning."""
    s = traffic_settings(ctx.settings, policy="qtable", label="learned", epsilon=ctx.cfg.eval_epsilon)
    with _worker(ctx, s, "learned-eval") as link:
        result = _run(ctx, link, "learned", ctx.cfg.seed, "eval")
        updates = _settled_updates(ctx, "learned-eval", result.extra["feedback"])
    return _policy_summary(result, "worker (qtable)", updates) | {"training": training}


# --- plumbing -----------------------------------------------------------------------------------


def _run(ctx: _Ctx, link: KafkaLink, policy: str, seed: int, run: str, note: str = "") -> LoopResult:
    cfg = ctx.cfg
    label = f"{policy} {'training' if run.startswith('train') else 'evaluation'}{note}"
    ctx.log(f"{label}: {cfg.duration_s} s of demand (seed {seed}) ...")
    result = run_over_kafka(
        link, cfg.net, policy, cfg.duration_s, seed, run=run,
        cache_dir=ctx.cache_dir, out_dir=ctx.workdir / "sumo" / f"{policy}-{run}", epoch0=time.time(),
    )  # fmt: skip
    latency = ""
    if result.extra["latencies_ms"]:
        lat = percentiles(result.extra["latencies_ms"], (50, 99))
        latency = f", latency p50/p99 {lat['p50']:.0f}/{lat['p99']:.0f} ms"
    ctx.log(
        f"{label}: avg wait {result.summary.avg_wait_s:.1f} s, {result.decisions}/{result.readings} "
        f"decisions{latency}, {result.wall_s:.1f} s wall"
    )
    return result


@contextlib.contextmanager
def _worker(ctx: _Ctx, s: Settings, name: str) -> Iterator[KafkaLink]:
    """A traffic worker in a child process (always stopped) and a link to it, once it is ready."""
    metrics = _metrics_dir(ctx, name)
    env = worker_env(s) | {
        "AGENTSTREAM_DATA_DIR": str(ctx.workdir / s.app_id),  # shared by workers of one app id
        "AGENTSTREAM_METRICS_DIR": str(metrics),
    }
    proc = spawn_worker(env, ctx.workdir / f"{name}.log")
    try:
        exploring = f", epsilon {s.epsilon}" if s.policy == "qtable" else ""
        ctx.log(f"{name}: starting a worker (policy {s.policy}{exploring}) ...")
        if not wait_for(lambda: workers_ready(metrics, 1, [proc]), ctx.cfg.ready_timeout_s, 0.25):
            raise RuntimeError(f"the {name} worker was not ready in {ctx.cfg.ready_timeout_s}s")
        with KafkaLink(s, timeout_s=ctx.cfg.step_timeout_s) as link:
            yield link
    except RuntimeError:
        log = ctx.workdir / f"{name}.log"
        ctx.log(log.read_text(errors="replace")[-3000:] if log.exists() else "(no worker log)")
        raise
    finally:
        stop(proc)


def _metrics_dir(ctx: _Ctx, name: str) -> Path:
    return ctx.workdir / "metrics" / name


def _settled_updates(ctx: _Ctx, name: str, feedback_sent: int, timeout_s: float = 20.0) -> int:
    """Learning updates once every measurement sent has been joined and learned (or the timeout)."""
    metrics = _metrics_dir(ctx, name)

    def learned() -> int:
        counts = read_all(metrics)
        return counts.get("learning_updates", 0) + counts.get("learning_duplicates", 0)

    if not wait_for(lambda: learned() >= feedback_sent, timeout_s, 0.25):
        ctx.log(f"{name}: {learned()} of {feedback_sent} measurements learned after {timeout_s}s")
    return read_all(metrics).get("learning_updates", 0)


def _rush_hour(cfg: TrafficDemoConfig) -> list[float]:
    """The demand's peak slice (sumo_net spreads the rates over equal slices of the period)."""
    rates = NETWORKS[cfg.net].rates_veh_h
    peak = rates.index(max(rates))
    width = cfg.duration_s / len(rates)
    return [peak * width, (peak + 1) * width]


def _policy_summary(result: LoopResult, decided_by: str, updates: int) -> dict[str, Any]:
    s = result.summary
    counts = s.signal_counts.values()
    latencies = result.extra.get("latencies_ms") or []
    return {
        "avg_wait_s": round(s.avg_wait_s, 2),
        "avg_travel_time_s": round(s.avg_travel_s, 2),
        "avg_depart_delay_s": round(s.avg_depart_delay_s, 2),
        "mean_queue": round(s.mean_queue, 3),
        "max_queue": s.max_queue,
        "vehicles_completed": s.vehicles_completed,
        "vehicles_unfinished": s.vehicles_unfinished,
        "teleports": s.teleports,
        "readings": result.readings,
        "decisions": result.decisions,
        "decided_by": decided_by,
        "missing_actions": sum(c["missing"] for c in counts),
        "stray_actions": result.extra.get("stray", 0),
        "switches": sum(c["switches"] for c in counts),
        "latency_ms": percentiles(latencies, (50, 99)) if latencies else None,
        "learning_updates": updates,
        "sim_s": s.sim_seconds,
        "wall_s": round(result.wall_s, 1),
        "queue_series": [[t, round(q, 2)] for t, q in s.queue_series],
    }


# --- output -------------------------------------------------------------------------------------


def print_traffic_summary(summary: dict[str, Any], console: Console) -> None:
    """The comparison table, then how much the learned policy changed against each baseline."""
    cols = [p for p in POLICIES if p in summary]
    learned = summary.get("learned", {})
    training = learned.get("training", {})
    title = (
        f"agentstream demo traffic — {summary['net']}, {summary['duration_s']} s of demand (seed "
        f"{summary['seed']}); learned after {len(training.get('episodes', []))} training episodes"
    )
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    for policy in cols:
        table.add_column(policy, justify="right")

    def latency(r: dict[str, Any]) -> str:
        lat = r["latency_ms"]
        return "-" if lat is None else f"{lat['p50']:.0f} / {lat['p99']:.0f}"

    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("avg waiting time per vehicle (s)", lambda r: f"{r['avg_wait_s']:.1f}"),
        ("avg travel time per trip (s)", lambda r: f"{r['avg_travel_time_s']:.1f}"),
        ("mean queue (halting vehicles)", lambda r: f"{r['mean_queue']:.2f}"),
        ("vehicles completed (unfinished)",
         lambda r: f"{r['vehicles_completed']:,} ({r['vehicles_unfinished']})"),
        ("decisions / readings", lambda r: f"{r['decisions']:,} / {r['readings']:,}"),
        ("decided by", lambda r: r["decided_by"]),
        ("missing actions", lambda r: f"{r['missing_actions']}"),
        ("decision latency p50 / p99 (ms)", latency),
        ("learning updates", lambda r: f"{r['learning_updates']:,}"),
        ("wall time (s)", lambda r: f"{r['wall_s']:.1f}"),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, *(value(summary[p]) for p in cols))
    console.print(table)
    if training:
        waits = ", ".join(f"{e['avg_wait_s']:.1f}" for e in training["episodes"])
        console.print(
            f"training: avg wait per episode {waits} s; {training['learning_updates']:,} learning updates "
            f"in {training['wall_s']:.0f} s (epsilon {training['epsilon']}, then {training['eval_epsilon']})"
        )
    for base in ("fixed_time", "max_pressure"):
        if learned and base in summary and summary[base]["avg_wait_s"] > 0:
            change = learned["avg_wait_s"] / summary[base]["avg_wait_s"] - 1.0
            console.print(f"learned vs {base}: {change:+.0%} average waiting time")
    if "chart" in summary:
        console.print(f"chart: {summary['chart']}")
    console.print(f"total wall time {summary['wall_s']:.0f} s")
