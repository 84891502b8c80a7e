"""A bench result as tables: printed with rich on the terminal, or as Markdown for RESULTS.md.

One definition of every table (title, header, rows of text), rendered two ways.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from perf.chart import LABELS

TableSpec = tuple[str, list[str], list[list[str]]]


def _num(value: Any, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def throughput_table(r: dict[str, Any]) -> TableSpec:
    rows = []
    for name, label in LABELS.items():
        t = r["throughput"].get(name)
        if not t:
            continue
        errors = "; ".join(run["error"] for run in t["runs"] if run.get("error"))
        rows.append(
            [
                label,
                _num(t["median"]),
                _num(t["min"]),
                _num(t["max"]),
                str(len(t["runs"])),
                _num(t["cpu_s_per_1k"], ".3f"),
                _num(t["peak_rss_mb"]),
                _num(r["ratios"].get(f"ours/{name}"), ".2f") if name != "ours" else "1",
                errors or "",
            ]
        )
    head = [
        "implementation",
        "events/s median",
        "min",
        "max",
        "runs",
        "CPU s / 1k events",
        "peak RSS MB",
        "ours / this",
        "errors",
    ]
    return "Throughput (pre-loaded workload, 1 process each)", head, rows


def latency_table(r: dict[str, Any]) -> TableSpec:
    mu = r.get("ours_eps") or 0.0
    rows = [
        [
            f"{lv['level']:.0%}",
            _num(lv["rate"]),
            _num(lv["rate"] / mu if mu else None, ".2f"),
            _num(lv["events"]),
            _num(lv["mean_ms"], ".1f"),
            *(_num(lv["latency_ms"][k], ".1f") for k in ("p50", "p95", "p99", "p99.9")),
            _num(lv["send_max_behind_ms"], ".1f"),
            lv.get("error") or "",
        ]
        for lv in r.get("levels") or []
    ]
    head = [
        "load",
        "offered events/s",
        "rho",
        "events",
        "mean ms",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "p99.9 ms",
        "sender max behind ms",
        "errors",
    ]
    return "Event -> action latency of ours, open-loop Poisson load, 1 worker", head, rows


def scaling_table(r: dict[str, Any]) -> TableSpec:
    sc = r.get("scale_2_workers") or {}
    rows = [[_num(sc.get("eps_1_worker")), _num(sc.get("eps_2_workers")), _num(sc.get("speedup"), ".2f")]]
    return (
        "Scaling: workers ready, then the workload burst in",
        ["1 worker ev/s", "2 workers ev/s", "2/1"],
        rows,
    )


def lag_table(r: dict[str, Any]) -> TableSpec:
    lag = r.get("learning_lag_ms") or {}
    rows = [
        [
            f"{lag.get('visible_everywhere', 0)} of {lag.get('trials', 0)}",
            _num(lag.get("p50"), ".1f"),
            _num(lag.get("p99"), ".1f"),
            _num(lag.get("max"), ".1f"),
            _num(lag.get("first_worker_p50"), ".1f"),
            _num(lag.get("row_written_p50"), ".1f"),
            _num(lag.get("resolution_ms_mean"), ".1f"),
        ]
    ]
    head = ["trials visible in every worker", "every worker p50 ms", "p99 ms", "max ms",
            "first worker p50 ms", "row in changelog p50 ms", "probe resolution ms"]  # fmt: skip
    return "Learning lag: feedback produced -> new row used (2 workers)", head, rows


def model_table(r: dict[str, Any]) -> TableSpec:
    v = r.get("validation") or {}
    rows = [
        [
            _num(x["rho"], ".2f"),
            _num(x["lam"]),
            _num(x["w_measured_ms"], ".2f"),
            _num(x["w_mm1_ms"], ".3f"),
            _num(x["w_floor_ms"], ".2f"),
            _num(x["l_measured"], ".1f"),
            _num(x["l_little"], ".1f"),
            _num(x["l_mm1"], ".3f"),
            _num(x["l_floor"], ".1f"),
        ]
        for x in v.get("rows", [])
    ]
    head = [
        "rho",
        "lambda",
        "W measured ms",
        "W M/M/1 ms",
        "W M/M/1+D0 ms",
        "L measured",
        "lambda x W meas",
        "L M/M/1",
        "L M/M/1+D0",
    ]
    title = (
        f"Queueing model vs measured (mu = {_num(v.get('mu'))}/s, D0 = {_num(v.get('d0_ms'), '.1f')} ms; "
        f"mean relative error: W M/M/1 {_pct(v.get('error_w_mm1'))}, "
        f"W M/M/1+D0 {_pct(v.get('error_w_floor'))}, "
        f"L M/M/1+D0 {_pct(v.get('error_l_floor'))}, Little {_pct(v.get('error_little'))})"
    )
    return title, head, rows


def profile_table(r: dict[str, Any], n: int = 15) -> TableSpec:
    prof = r.get("profile") or {}
    own = prof.get("self") or []
    incl = prof.get("inclusive") or []
    rows = [
        [
            own[i][0] if i < len(own) else "",
            _pct(own[i][1]) if i < len(own) else "",
            incl[i][0] if i < len(incl) else "",
            _pct(incl[i][1]) if i < len(incl) else "",
        ]
        for i in range(min(n, max(len(own), len(incl))))
    ]
    title = f"py-spy profile of ours ({prof.get('samples', 0):,} samples)"
    return title, ["self: function (file)", "self %", "inclusive: function (file)", "incl %"], rows


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def all_tables(r: dict[str, Any]) -> list[TableSpec]:
    tables = [throughput_table(r)]
    if r.get("levels"):
        tables += [latency_table(r), model_table(r)]
    if r.get("scale_2_workers"):
        tables.append(scaling_table(r))
    if r.get("learning_lag_ms"):
        tables.append(lag_table(r))
    if (r.get("profile") or {}).get("samples"):
        tables.append(profile_table(r))
    return tables


def markdown(r: dict[str, Any]) -> str:
    parts = []
    for title, head, rows in all_tables(r):
        lines = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def print_tables(r: dict[str, Any], console: Console) -> None:
    for title, head, rows in all_tables(r):
        table = RichTable(title=title, title_justify="left")
        for i, name in enumerate(head):
            table.add_column(name, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
