"""The `bench` and `plan` commands, registered on the `agentstream` typer app by streams/cli.py.

Progress goes to stderr and results to stdout; with --json the last stdout line is one JSON object.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from streams.core.queueing import Plan, partitions_for, plan

progress_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
    app.command("plan")(plan_command)


def bench(
    events: Annotated[
        int | None, typer.Option(help="Events in the workload [default: 100000, quick 10000].")
    ] = None,
    partitions: Annotated[int, typer.Option(help="Partitions of the workload topic.")] = 4,
    runs: Annotated[
        int | None, typer.Option(help="Throughput runs per implementation [default: 3, quick 1].")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A sanity run in under 3 minutes.")] = False,
    only: Annotated[
        str, typer.Option(help="Comma-separated: ours,plain_faust,quix,raw.")
    ] = "ours,plain_faust,quix,raw",
    seed: Annotated[int, typer.Option(help="Workload seed.")] = 42,
    level_seconds: Annotated[float | None, typer.Option(help="Seconds per latency level.")] = None,
    lag_trials: Annotated[int | None, typer.Option(help="Learning-lag trials.")] = None,
    profile: Annotated[bool, typer.Option("--profile", help="Add a py-spy profiled run of ours.")] = False,
    out: Annotated[
        Path | None, typer.Option(help="Write results.json, results.md and PNG charts here.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON on the last line.")
    ] = False,
    keep_workdir: Annotated[bool, typer.Option(help="Keep the workers' logs and state.")] = False,
) -> None:
    """Benchmark ours against plain Faust, Quix Streams and a raw client loop on one broker."""
    from perf.bench import BenchConfig, run_bench
    from perf.implementations import IMPLEMENTATIONS

    chosen = tuple(n.strip() for n in only.split(",") if n.strip())
    unknown = sorted(set(chosen) - set(IMPLEMENTATIONS))
    if unknown:
        progress_console.print(
            f"[red]unknown implementation(s) {unknown}; valid: {', '.join(IMPLEMENTATIONS)}"
        )
        raise typer.Exit(2)
    changes: dict[str, Any] = {
        "partitions": partitions,
        "only": chosen,
        "seed": seed,
        "profile": profile,
        "out": out,
        "keep_workdir": keep_workdir,
    }
    for name, value in (
        ("events", events),
        ("runs", runs),
        ("level_seconds", level_seconds),
        ("lag_trials", lag_trials),
    ):
        if value is not None:
            changes[name] = value
    cfg = BenchConfig.quick(**changes) if quick else BenchConfig(**changes)
    results = run_bench(_settings(), cfg, progress_console)
    _report(results, out)
    if as_json:
        sys.stdout.write(orjson.dumps(results, option=orjson.OPT_NON_STR_KEYS).decode() + "\n")


def _report(results: dict[str, Any], out: Path | None) -> None:
    from perf.report import markdown, print_tables

    print_tables(results, Console(file=sys.stdout, width=160))
    if out is None:
        return
    from perf.chart import write_charts

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    )
    (out / "results.md").write_text(markdown(results))
    charts = write_charts(results, out)
    progress_console.print(f"wrote results.json, results.md and {len(charts)} chart(s) to {out}")


def _settings() -> Any:
    from streams.settings import load_settings

    try:
        return load_settings()
    except (ValueError, TypeError) as exc:
        progress_console.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from None


def plan_command(
    rate: Annotated[float, typer.Option("--rate", help="Arrival rate lambda to plan for, events/s.")],
    latency_p99_ms: Annotated[float, typer.Option("--latency-p99-ms", help="Target p99 time in system, ms.")],
    service_rate: Annotated[
        float | None, typer.Option("--service-rate", help="Events/s one worker serves (mu).")
    ] = None,
    from_bench: Annotated[
        Path | None, typer.Option("--from-bench", help="Take mu = ours_eps from a bench JSON result.")
    ] = None,
    max_workers: Annotated[int, typer.Option("--max-workers", help="Evaluate c = 1..this.")] = 16,
    headroom: Annotated[float, typer.Option(help="Partitions = a multiple of c >= c x headroom.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON on the last line.")] = False,
) -> None:
    """Workers and partitions for a target rate and p99 latency, from M/M/c (Erlang C)."""
    mu = _service_rate(service_rate, from_bench)
    try:
        result = plan(rate, mu, latency_p99_ms / 1000.0, max_workers)
    except ValueError as exc:
        progress_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    partitions = partitions_for(result.workers, headroom) if result.workers else None
    out = Console(file=sys.stdout, width=140)
    out.print(_plan_table(result))
    if result.workers:
        out.print(
            f"smallest number of workers meeting p99 <= {latency_p99_ms:g} ms: "
            f"[bold]{result.workers}[/bold]; create {partitions} partitions "
            f"(a multiple of {result.workers}, >= {headroom:g}x for headroom)"
        )
    else:
        out.print(
            f"[red]no c <= {max_workers} meets p99 <= {latency_p99_ms:g} ms[/red] "
            f"(one event's own p99 service time is ln(100)/mu = {1000 * math.log(100) / mu:.2f} ms)"
        )
    if as_json:
        payload = {
            "rate": rate,
            "service_rate": mu,
            "target_p99_ms": latency_p99_ms,
            "workers": result.workers,
            "partitions": partitions,
            "rows": [_row_json(r) for r in result.rows],
        }
        sys.stdout.write(orjson.dumps(payload).decode() + "\n")


def _service_rate(service_rate: float | None, from_bench: Path | None) -> float:
    if (service_rate is None) == (from_bench is None):
        progress_console.print("[red]give exactly one of --service-rate and --from-bench[/red]")
        raise typer.Exit(2)
    if service_rate is not None:
        return service_rate
    assert from_bench is not None
    text = from_bench.read_text().strip()
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:  # captured `bench --json` output: the JSON is the last line
        data = orjson.loads(text.splitlines()[-1])
    mu = data.get("ours_eps")
    if not mu:
        progress_console.print(f"[red]{from_bench} has no ours_eps[/red]")
        raise typer.Exit(2)
    return float(mu)


def _ms(seconds: float) -> str:
    return "inf" if math.isinf(seconds) else f"{seconds * 1000:,.2f}"


def _plan_table(result: Plan) -> Table:
    table = Table(
        title=f"M/M/c plan: lambda = {result.lam:,.0f}/s, mu = {result.mu:,.0f}/s per worker, "
        f"target p99 = {result.target_p99_s * 1000:g} ms"
    )
    for name in (
        "c",
        "rho",
        "P(wait)",
        "Wq ms",
        "W ms",
        "L = lambda W",
        "p99 ms (M/M/c)",
        "p99 ms (c x M/M/1)",
        "meets",
    ):
        table.add_column(name, justify="right")
    for r in result.rows:
        table.add_row(
            str(r.c),
            f"{r.rho:.3f}",
            f"{r.p_wait:.4f}",
            _ms(r.wq),
            _ms(r.w),
            "inf" if math.isinf(r.l) else f"{r.l:,.3f}",
            _ms(r.p99),
            _ms(r.p99_split),
            "[green]yes[/green]" if r.meets else ("no" if r.stable else "unstable"),
            style="bold" if r.c == result.workers else None,
        )
    return table


def _row_json(r: Any) -> dict[str, Any]:
    def finite(x: float) -> float | None:
        return None if math.isinf(x) else x

    return {
        "c": r.c,
        "rho": r.rho,
        "p_wait": r.p_wait,
        "wq_ms": finite(r.wq * 1000),
        "w_ms": finite(r.w * 1000),
        "l": finite(r.l),
        "p99_ms": finite(r.p99 * 1000),
        "p99_split_ms": finite(r.p99_split * 1000),
        "meets": r.meets,
        "stable": r.stable,
    }
