"""The `agentstream` command."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from streams.settings import Settings, load_settings

app = typer.Typer(
    help="Real-time decision agents on Kafka: perceive, decide, act and learn online.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # never print settings (and their secrets) in a traceback
)
console = Console(stderr=True)


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except (ValueError, TypeError) as exc:
        console.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def setup() -> None:
    """Fetch the Apache Kafka jars (Maven Central) for the embedded broker into .kafka/."""
    from connectors.broker import BrokerError, ensure_kafka_jars, lib_dir

    settings = _settings()
    try:
        ensure_kafka_jars(settings, console.print)
    except BrokerError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"Kafka {settings.kafka_version} jars ready in {lib_dir(settings)}")


@app.command()
def broker(
    brokers: Annotated[int, typer.Option(help="Number of KRaft nodes (3 for fault tests).")] = 1,
) -> None:
    """Start the embedded Kafka on free loopback ports; print the bootstrap address; Ctrl-C stops it."""
    from connectors.broker import BrokerError, EmbeddedKafka

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with EmbeddedKafka(brokers=brokers, settings=_settings(), log=console.print) as cluster:
            print(cluster.bootstrap, flush=True)
            console.print(f"export KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap}   # Ctrl-C stops the broker")
            try:
                while not stop.wait(0.5):
                    if not any(n.alive for n in cluster.nodes):
                        console.print("[red]the broker exited; see its log folder[/red]")
                        raise typer.Exit(1)
            except KeyboardInterrupt:
                pass
            console.print("stopping the broker ...")
    except BrokerError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


@app.command()
def worker(
    scenario: Annotated[str | None, typer.Option(help="risk | traffic")] = None,
    policy: Annotated[str | None, typer.Option(help="qtable | softmax | thompson | rules")] = None,
    loglevel: Annotated[str, typer.Option(help="Faust log level.")] = "warning",
) -> None:
    """Run a Faust worker (decide, join and learn agents) against KAFKA_BOOTSTRAP_SERVERS."""
    settings = _settings(scenario=scenario, policy=policy)
    if settings.embedded:
        console.print("[red]set KAFKA_BOOTSTRAP_SERVERS (or run `agentstream broker` first)[/red]")
        raise typer.Exit(2)
    from streams.worker import run_worker

    run_worker(settings, loglevel)


@app.command()
def generate(
    scenario: Annotated[str, typer.Argument(help="risk")] = "risk",
    events: Annotated[int, typer.Option(help="Number of events.")] = 100_000,
    rate: Annotated[float, typer.Option(help="Events per second (0: as fast as possible).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same stream).")] = 42,
    output: Annotated[Path | None, typer.Option(help="Write JSONL here instead of publishing.")] = None,
) -> None:
    """Generate a synthetic stream (events + delayed labels) into its topics or a JSONL file."""
    if scenario != "risk":
        console.print("[red]only the risk generator exists; traffic readings come from SUMO[/red]")
        raise typer.Exit(2)
    from connectors.generate import RiskGenerator, generate_to_jsonl

    if output is not None:
        stats = generate_to_jsonl(output, events, seed)
        console.print(f"wrote {stats.events} events and {stats.labels} labels to {output}")
        return
    settings = _settings()
    if settings.embedded:
        console.print("[red]set KAFKA_BOOTSTRAP_SERVERS (or use --output FILE)[/red]")
        raise typer.Exit(2)
    from connectors.admin import ensure_topics
    from connectors.publish import Publisher
    from streams.progress import progress_bar

    topics = settings.topics("risk")
    ensure_topics(settings, topics.all())
    kind_topic = {"event": topics.events, "feedback": topics.feedback}
    records = ((kind_topic[r.kind], r.key, r.value) for r in RiskGenerator(seed).records(events))
    with progress_bar("publishing", total=None) as advance:
        result = Publisher(settings).publish(records, rate=rate, progress=advance)
    console.print(f"published {result.sent} records in {result.seconds:.1f}s ({result.rate:,.0f}/s)")


@app.command()
def publish(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A .jsonl or .csv file.")],
    topic: Annotated[str, typer.Option(help="Target topic.")],
    key_field: Annotated[str | None, typer.Option(help="Field whose value is the record key.")] = None,
) -> None:
    """Load a JSONL or CSV file into a topic; bad lines are reported with their line numbers."""
    settings = _settings()
    if settings.embedded:
        console.print("[red]set KAFKA_BOOTSTRAP_SERVERS[/red]")
        raise typer.Exit(2)
    from connectors.admin import ensure_topics
    from connectors.publish import publish_file
    from streams.progress import progress_bar

    ensure_topics(settings, [topic])
    with progress_bar(f"publishing {file.name}", total=None) as advance:
        result, bad = publish_file(settings, topic, file, key_field, progress=advance)
    console.print(f"published {result.sent} records to {topic} in {result.seconds:.1f}s")
    for line in bad[:50]:
        console.print(f"[yellow]line {line.line}: {line.reason}[/yellow]")
    if bad:
        console.print(f"[yellow]{len(bad)} bad lines were not published[/yellow]")
        raise typer.Exit(1)


@app.command()
def demo(
    scenario: Annotated[str, typer.Argument(help="risk | traffic")] = "risk",
    events: Annotated[int, typer.Option(help="risk: number of events.")] = 120_000,
    rate: Annotated[float, typer.Option(help="risk: events/s published (0: as fast as possible).")] = 2_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    policy: Annotated[str | None, typer.Option(help="risk: qtable | softmax | thompson | rules")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on the last line.")
    ] = False,
    net: Annotated[str, typer.Option(help="traffic: single | grid2x2")] = "single",
    duration: Annotated[int, typer.Option(help="traffic: simulated seconds of demand per run.")] = 3600,
    episodes: Annotated[int, typer.Option(help="traffic: training runs before the learned policy.")] = 5,
    chart: Annotated[Path | None, typer.Option(help="traffic: PNG of queue length over time.")] = None,
) -> None:
    """Run a main job on the embedded broker (unless configured), then print a summary.

    `demo risk`: a worker and the card-transaction generator. `demo traffic`: signal control in a
    closed loop with the SUMO simulator (needs the traffic extra).
    """
    if scenario == "traffic":
        from streams.traffic_demo import TrafficDemoConfig, print_traffic_summary, run_traffic_demo

        cfg = TrafficDemoConfig(net=net, duration_s=duration, episodes=episodes, seed=seed, chart=chart)
        try:
            summary = run_traffic_demo(_settings(), cfg, console)
        except ValueError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
        print_traffic_summary(summary, console)
        _print_json(summary, as_json)
        return
    if scenario != "risk":
        console.print(f"[red]unknown scenario {scenario!r}: risk | traffic[/red]")
        raise typer.Exit(2)
    from streams.demo import DemoConfig, print_summary, run_risk_demo

    settings = _settings(policy=policy)
    summary = run_risk_demo(settings, DemoConfig(events=events, rate=rate, seed=seed), console)
    print_summary(summary, console)
    _print_json(summary, as_json)


def _print_json(summary: dict, as_json: bool) -> None:
    """The summary as one JSON object on the last line of stdout (tables go to stderr)."""
    if as_json:
        import orjson

        sys.stdout.write(orjson.dumps(summary).decode() + "\n")


def _register_command_groups() -> None:
    """Commands that live with their subsystems: replay/snapshot/reset, bench/plan."""
    from perf.cli import register as register_perf
    from streams.replay.cli import register as register_replay

    register_replay(app)
    register_perf(app)


_register_command_groups()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
