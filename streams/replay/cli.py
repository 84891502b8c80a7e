"""The `replay`, `snapshot` and `reset` commands; `register(app)` adds them to the agentstream CLI."""

from __future__ import annotations

import re
import time
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from streams.settings import Settings, load_settings

err = Console(stderr=True)
WIDE = 140  # tables printed to a file or pipe: rich would otherwise wrap them at 80 columns


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=WIDE)


DEFAULT_POLICIES = ["rules", "qtable"]


def _stages(seconds: dict[str, float]) -> str:
    """Where the wall time went: "read + parse 4.12s, replay 4.31s, report 0.18s"."""
    return ", ".join(f"{stage} {s:,.2f}s" for stage, s in seconds.items())


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]{message}[/red]")
    return typer.Exit(code)


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except (ValueError, TypeError) as exc:
        raise _fail(f"invalid settings: {exc}") from None


def _kafka_settings(**overrides: object) -> Settings:
    settings = _settings(**overrides)
    if settings.embedded:
        raise _fail("set KAFKA_BOOTSTRAP_SERVERS (or run `agentstream broker` first)")
    return settings


# --- replay ----------------------------------------------------------------------------------


def _bound(moment: str | None, offset: int | None) -> Any:
    from streams.replay.sources import OPEN, Bound, parse_time

    if moment is not None and offset is not None:
        raise ValueError("give each end of the range as a time or as an offset, not both")
    if moment is not None:
        return Bound.at_time(parse_time(moment))
    return OPEN if offset is None else Bound.at_offset(offset)


def _bounds(start: str | None, end: str | None, start_offset: int | None, end_offset: int | None) -> tuple:
    lo, hi = _bound(start, start_offset), _bound(end, end_offset)
    if lo.time_ms is not None and hi.time_ms is not None and hi.time_ms <= lo.time_ms:
        raise ValueError("the range is empty: --to must be after --from")
    if lo.offset is not None and hi.offset is not None and hi.offset <= lo.offset:
        raise ValueError("the range is empty: --to-offset must be after --from-offset")
    return lo, hi


def _fmt(value: Any, spec: str = ",.2f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return format(value, ",") if isinstance(value, int) else str(value)


def comparison_table(report: dict[str, Any]) -> Table:
    from streams.replay.report import comparison_rows

    table = Table(title="Replay: policies compared on the same events and labels")
    for name in (
        "policy",
        "events",
        "cost/1k",
        "approve",
        "decline P",
        "decline R",
        "flag P",
        "flag R",
        "agree",
    ):
        table.add_column(name, justify="left" if name == "policy" else "right")
    for row in comparison_rows(report):
        table.add_row(
            row["policy"], _fmt(row["events"]), _fmt(row["cost_per_1k"]), _fmt(row["approve_rate"], ".1%"),
            _fmt(row["decline_precision"], ".1%"), _fmt(row["decline_recall"], ".1%"),
            _fmt(row["flag_precision"], ".1%"), _fmt(row["flag_recall"], ".1%"),
            _fmt(row["agreement"], ".2%"),
        )  # fmt: skip
    return table


def ope_table(ope: dict[str, Any]) -> Table:
    table = Table(title=f"Off-policy estimates from {ope['logged']:,} live decisions (cost per 1k, 95% CI)")
    for name in ("policy", "replayed", "IPS", "SNIPS", "DR"):
        table.add_column(name, justify="left" if name == "policy" else "right")

    def cost(est: dict[str, float]) -> str:
        return f"{-1000 * est['value']:,.1f} [{-1000 * est['high']:,.1f}, {-1000 * est['low']:,.1f}]"

    table.add_row("live (logged)", f"{-1000 * ope['live_value']:,.1f}", "", "", "")
    for label, entry in ope.items():
        if isinstance(entry, dict):
            table.add_row(
                label,
                f"{-1000 * entry['replayed']:,.1f}",
                cost(entry["ips"]),
                cost(entry["snips"]),
                cost(entry["dr"]),
            )
    return table


def _save_tables(settings: Settings, backtest: Any, path: Path) -> list[Path]:
    """Write each learning policy's final table as a snapshot (promotable with `snapshot load`)."""
    from streams.replay.snapshot import from_settings, write

    pairs = zip(backtest.specs, backtest.result.runs, strict=True)
    tabular = [(spec, run) for spec, run in pairs if spec.policy.name != "rules"]
    written = []
    for spec, run in tabular:
        target = path
        if len(tabular) > 1:
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.label).strip("-")
            target = path.with_name(f"{path.stem}-{safe}{path.suffix or '.json'}")
        snap_settings = settings.with_overrides(policy=spec.policy.name)
        snapshot = from_settings(
            snap_settings, run.table, backtest.result.actions, source=f"replay:{spec.label}"
        )
        written.append(write(snapshot, target))
    return written


def replay(
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", "-p", help="qtable | softmax | thompson | rules | snapshot:FILE (repeat)."),
    ] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", help="A JSONL file (agentstream generate).")
    ] = None,
    start: Annotated[str | None, typer.Option("--from", help="Start (ISO datetime, record time).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="End, exclusive (ISO datetime).")] = None,
    start_offset: Annotated[
        int | None, typer.Option("--from-offset", help="Start offset (every partition).")
    ] = None,
    end_offset: Annotated[int | None, typer.Option("--to-offset", help="End offset, exclusive.")] = None,
    feedback_grace: Annotated[
        float, typer.Option(help="Seconds of feedback to read past the range end.")
    ] = 0.0,
    learning: Annotated[
        bool, typer.Option("--learning/--no-learning", help="Learn from labels during replay.")
    ] = True,
    seed: Annotated[
        int | None, typer.Option(help="Salt the exploration draws (default: exactly live's).")
    ] = None,
    actions_file: Annotated[
        Path | None, typer.Option("--actions", help="Live actions JSONL (with --input).")
    ] = None,
    live: Annotated[bool, typer.Option("--live/--no-live", help="Compare with the actions topic.")] = True,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON object on the last line of stdout.")
    ] = False,
    chart: Annotated[Path | None, typer.Option(help="Write the cumulative-reward PNG here.")] = None,
    save_table: Annotated[Path | None, typer.Option(help="Save learned tables as snapshots.")] = None,
    ope_interval: Annotated[str, typer.Option(help="normal | bootstrap (seeded).")] = "normal",
    republish: Annotated[
        str | None, typer.Option(help="Re-inject the range into this topic instead.")
    ] = None,
    speed: Annotated[float, typer.Option(help="With --republish: timing speed-up (0: flat out).")] = 1.0,
    scenario: Annotated[str | None, typer.Option(help="risk | traffic (default: settings).")] = None,
) -> None:
    """Backtest policies on recorded events and feedback (topics or a JSONL file), or republish a range."""
    from streams.replay.sources import SourceError

    kafka_range = any(v is not None for v in (start, end, start_offset, end_offset))
    if input_file is not None and (kafka_range or republish):
        raise _fail("--input reads a file: --from/--to/--republish read topics")
    if ope_interval not in {"normal", "bootstrap"}:
        raise _fail(f"--ope-interval is normal or bootstrap, not {ope_interval!r}")
    try:
        lo, hi = _bounds(start, end, start_offset, end_offset)
    except (ValueError, SourceError) as exc:
        raise _fail(str(exc)) from None
    if republish:
        _republish(republish, speed, lo, hi, scenario)
        return
    settings = _settings(scenario=scenario) if input_file is not None else _kafka_settings(scenario=scenario)
    _check_policies(settings, policy or DEFAULT_POLICIES)  # before a long read, not after it
    out = _console(stderr=json_out)
    began, began_cpu = time.perf_counter(), time.process_time()
    try:
        backtest = _run(
            settings, policy or DEFAULT_POLICIES, input_file, actions_file, live, lo, hi, feedback_grace,
            learning=learning, seed=seed, ope_method=ope_interval,
        )  # fmt: skip
    except SourceError as exc:
        raise _fail(str(exc)) from None
    except ValueError as exc:  # unknown policy, unreadable snapshot, ...
        raise _fail(str(exc)) from None
    seconds, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    report = backtest.report
    events = report["input"]["events"]
    err.print(
        f"replayed {events:,} events ({backtest.records:,} records) x {len(backtest.specs)} policies "
        f"in {seconds:,.2f}s: {events / seconds:,.0f} events/s wall, {events / cpu:,.0f} per CPU-second "
        f"({_stages(backtest.seconds)}; {backtest.engine} engine)"
    )
    out.print(comparison_table(report))
    if "ope" in report:
        out.print(ope_table(report["ope"]))
    if chart is not None:
        from streams.replay.chart import write_chart

        out.print(f"chart: {write_chart(report, chart)}")
    if save_table is not None:
        for path in _save_tables(settings, backtest, save_table):
            out.print(f"table snapshot: {path}")
    if json_out:
        typer.echo(orjson.dumps(report).decode())


def _check_policies(settings: Settings, policies: list[str]) -> None:
    from streams.replay.policies import resolve_all
    from streams.scenarios import build_scenario

    try:
        resolve_all(policies, build_scenario(settings), settings)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _run(
    settings: Settings,
    policies: list[str],
    input_file: Path | None,
    actions_file: Path | None,
    live: bool,
    lo: Any,
    hi: Any,
    feedback_grace: float,
    **options: Any,
) -> Any:
    """Read the input and replay it, under one progress bar (2 units per record: read, replay)."""
    from streams.progress import progress_bar
    from streams.replay.backtest import JsonlFile, Topics, backtest
    from streams.replay.risk_input import count_lines, map_file
    from streams.replay.sources import OPEN, Bound, ScenarioRange, read_actions_jsonl
    from streams.scenarios import build_scenario
    from streams.scenarios.risk import RiskScenario

    scenario = build_scenario(settings)
    actions = tuple(scenario.actions)
    if input_file is not None:
        data = map_file(input_file)
        logged = read_actions_jsonl(actions_file, actions) if actions_file else None
        lines = count_lines(data)
        if not data[:4096].strip() and not bytes(data).strip():
            raise _fail("nothing to replay: the file holds no records", 1)
        source, total, what = JsonlFile(input_file, data, logged), lines, f"{lines:,} records"
    else:
        scenario_range = ScenarioRange(settings, lo, hi, feedback_grace)
        if not scenario_range.estimate:
            raise _fail("nothing to replay: the range holds no records", 1)
        # Actions are stamped when live decided, at or after their event's record time: from a time
        # bound on (an offset bound: all of them; decisions the replay does not make are not compared).
        since = Bound(time_ms=lo.time_ms) if lo != OPEN and lo.time_ms is not None else OPEN
        total = scenario_range.estimate
        source = Topics(scenario_range, since if live else None, actions)
        what = f"up to {total:,} records from the topics"
        if isinstance(scenario, RiskScenario):  # the scenario the columnar engine reads
            source.start()  # a child reads the topics (and the live actions) while this one parses
    with progress_bar(f"replaying {what}", total=2 * total) as advance, closing(source):
        result = backtest(settings, source, policies, progress=advance, **options)
    if not result.records:
        raise _fail("nothing to replay: the range holds no records", 1)
    return result


def _republish(target: str, speed: float, lo: Any, hi: Any, scenario: str | None) -> None:
    from streams.progress import progress_bar
    from streams.replay.republish import republish
    from streams.replay.sources import SourceError

    settings = _kafka_settings(scenario=scenario)
    try:
        with progress_bar(f"republishing into {target}", total=None) as advance:
            result = republish(settings, settings.topics().events, target, lo, hi, speed, advance)
    except (ValueError, SourceError) as exc:
        raise _fail(str(exc)) from None
    err.print(
        f"republished {result.sent:,} records ({result.source_span_s:,.1f}s of record time) "
        f"in {result.seconds:,.1f}s ({result.rate:,.0f}/s)"
    )


# --- snapshot ----------------------------------------------------------------------------------

snapshot_app = typer.Typer(help="Save, inspect and restore decision-table snapshots.", no_args_is_help=True)


@snapshot_app.command("save")
def snapshot_save(path: Annotated[Path, typer.Argument(help="Snapshot file to write (JSON).")]) -> None:
    """Save the live decision table (latest row per state key) with the policy parameters."""
    from streams.replay.snapshot import SnapshotError, save

    try:
        snap = save(_kafka_settings(), path)
    except SnapshotError as exc:
        raise _fail(str(exc), 1) from None
    err.print(f"saved {len(snap.rows)} rows of the {snap.scenario} decision table to {path}")


@snapshot_app.command("show")
def snapshot_show(path: Annotated[Path, typer.Argument(help="Snapshot file.")]) -> None:
    """Print a snapshot's parameters and its most visited rows."""
    from streams.replay.snapshot import SnapshotError, read

    try:
        snap = read(path)
    except SnapshotError as exc:
        raise _fail(str(exc), 1) from None
    console = _console()
    console.print(
        f"{snap.scenario} table, {len(snap.rows)} rows, policy {snap.policy} (epsilon {snap.epsilon}, "
        f"temperature {snap.temperature}, alpha {snap.learning_rate}, gamma {snap.discount}), "
        f"created {snap.created} from {snap.source or '?'}"
    )
    table = Table(title="most visited states")
    for name in ("state", "updates", "greedy", *snap.actions):
        table.add_column(name, justify="left" if name in {"state", "greedy"} else "right")
    for key, row in sorted(snap.rows.items(), key=lambda kv: (-sum(kv[1].n), kv[0]))[:15]:
        table.add_row(key, f"{sum(row.n):,}", snap.actions[row.best()], *(f"{q:,.2f}" for q in row.q))
    console.print(table)


@snapshot_app.command("load")
def snapshot_load(path: Annotated[Path, typer.Argument(help="Snapshot file to restore.")]) -> None:
    """Make a snapshot the live decision table (workers must be stopped; they recover it on start)."""
    from streams.replay.groups import GroupActive
    from streams.replay.snapshot import SnapshotError, promote

    try:
        rows = promote(_kafka_settings(), path)
    except GroupActive as exc:
        raise _fail(str(exc), 1) from None
    except SnapshotError as exc:
        raise _fail(str(exc), 1) from None
    err.print(f"promoted {rows} rows from {path} into the live decision table")


snapshot_app.command("promote", help="Same as load: make a snapshot the live decision table.")(snapshot_load)


# --- reset ------------------------------------------------------------------------------------


def reset(
    to: Annotated[str, typer.Option("--to", help="earliest | latest | OFFSET | P=OFFSET,... | ISO datetime")],
    group: Annotated[str | None, typer.Option(help="Consumer group (default: the app id).")] = None,
    topic: Annotated[list[str] | None, typer.Option(help="Only these topics (repeat).")] = None,
    execute: Annotated[bool, typer.Option("--execute", help="Apply the plan (default: dry run).")] = False,
    wipe_state: Annotated[Path | None, typer.Option(help="Also delete this local state directory.")] = None,
) -> None:
    """Move the app's consumer group to a time, earliest/latest or offsets; prints the plan first."""
    from streams.replay.groups import GroupActive
    from streams.replay.reset import ResetError, parse_target, plan
    from streams.replay.reset import execute as apply_plan
    from streams.replay.reset import wipe_state as wipe

    settings = _kafka_settings()
    group = group or settings.app_id
    try:
        rows = plan(settings, group, parse_target(to), topic or None)
    except ResetError as exc:
        raise _fail(str(exc)) from None
    table = Table(title=f"reset plan for group {group} -> {to}" + ("" if execute else " (dry run)"))
    for name in ("topic", "partition", "current", "target", "note"):
        table.add_column(name, justify="right" if name in {"partition", "current", "target"} else "left")
    for r in rows:
        current = "-" if r.current is None else f"{r.current:,}"
        table.add_row(r.topic, str(r.partition), current, f"{r.target:,}", r.note)
    _console().print(table)
    if not execute:
        note = f" and delete {wipe_state}" if wipe_state else ""
        err.print(f"dry run: pass --execute to move {sum(r.moves for r in rows)} partition(s){note}")
        return
    try:
        apply_plan(settings, group, rows)
        if wipe_state is not None:
            err.print(f"deleted state directory {wipe(wipe_state)}")
    except (GroupActive, ResetError) as exc:
        raise _fail(str(exc), 1) from None
    err.print(f"moved group {group}: {len(rows)} partition(s) now at their targets")


def register(app: typer.Typer) -> None:
    """Add `replay`, `snapshot save|show|load|promote` and `reset` to the agentstream CLI."""
    app.command()(replay)
    app.add_typer(snapshot_app, name="snapshot")
    app.command()(reset)


def main() -> None:
    """`python -m streams.replay.cli`: the three commands on their own (before they join agentstream)."""
    app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False)
    register(app)
    app()


if __name__ == "__main__":
    main()
