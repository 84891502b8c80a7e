"""PNG charts of a bench result (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

LABELS = {"ours": "agentstream", "plain_faust": "plain Faust", "quix": "Quix Streams", "raw": "raw loop"}


def throughput_chart(results: dict[str, Any], path: Path) -> Path:
    names = [n for n in LABELS if (results["throughput"].get(n) or {}).get("median")]
    stats = [results["throughput"][n] for n in names]
    medians = [s["median"] for s in stats]
    low = [m - s["min"] for m, s in zip(medians, stats, strict=True)]
    high = [s["max"] - m for m, s in zip(medians, stats, strict=True)]
    fig, ax = plt.subplots(figsize=(7, 4))
    bars = ax.bar(
        [LABELS[n] for n in names],
        medians,
        yerr=[low, high],
        capsize=6,
        color=["#2a7ab9" if n == "ours" else "#999999" for n in names],
    )
    ax.bar_label(bars, labels=[f"{m:,.0f}" for m in medians], padding=3)
    ax.set_ylabel("events/s (median of runs; bars: min-max)")
    cfg = results["config"]
    ax.set_title(f"Throughput, {cfg['events']:,} risk events, {cfg['partitions']} partitions, 1 process")
    ax.margins(y=0.15)
    return _save(fig, path)


def latency_chart(results: dict[str, Any], path: Path) -> Path:
    levels = results["levels"]
    mu = results["ours_eps"]
    rho = [lv["rate"] / mu for lv in levels]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("p50", "p95", "p99", "p99.9"):
        ax.plot(rho, [lv["latency_ms"][key] for lv in levels], marker="o", label=key)
    ax.set_yscale("log")
    ax.set_xlabel("utilisation rho = offered rate / measured max rate")
    ax.set_ylabel("event -> action latency, ms (log)")
    ax.set_title("agentstream latency under open-loop Poisson load (1 worker)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def model_chart(results: dict[str, Any], path: Path) -> Path:
    rows = results["validation"]["rows"]
    rho = [r["rho"] for r in rows]
    fig, (ax_w, ax_l) = plt.subplots(1, 2, figsize=(10, 4))
    ax_w.plot(rho, [r["w_measured_ms"] for r in rows], "o-", label="measured mean")
    ax_w.plot(rho, [r["w_floor_ms"] for r in rows], "s--", label="M/M/1 + fixed delay D0")
    ax_w.plot(rho, [r["w_mm1_ms"] for r in rows], "^:", label="M/M/1")
    ax_w.set_yscale("log")
    ax_w.set(xlabel="rho", ylabel="mean time in system W, ms (log)", title="W: model vs measured")
    ax_l.plot(rho, [r["l_measured"] for r in rows], "o-", label="measured (time average)")
    ax_l.plot(rho, [r["l_little"] for r in rows], "x", label="lambda x measured W")
    ax_l.plot(rho, [r["l_floor"] for r in rows], "s--", label="M/M/1 + D0")
    ax_l.plot(rho, [r["l_mm1"] for r in rows], "^:", label="M/M/1")
    ax_l.set_yscale("log")
    ax_l.set(xlabel="rho", ylabel="mean events in flight L (log)", title="L = lambda W: model vs measured")
    for ax in (ax_w, ax_l):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def write_charts(results: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [throughput_chart(results, out / "throughput.png")]
    if results.get("levels") and results.get("ours_eps"):
        written.append(latency_chart(results, out / "latency.png"))
    if (results.get("validation") or {}).get("rows"):
        written.append(model_chart(results, out / "model.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
