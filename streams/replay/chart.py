"""The replay chart: cumulative reward over event time, one line per policy (PNG).

Cumulative reward, not a rolling rate: the gap between two lines at any time is exactly the money
one policy saved over the other up to then, and a learner's slope change shows when it learned.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def write_chart(report: dict[str, Any], path: str | Path, title: str = "Replay: cumulative reward") -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
    try:
        for label, summary in report.items():
            series = summary.get("series") if isinstance(summary, dict) else None
            if not series:
                continue
            times = [datetime.fromtimestamp(t, UTC) for t, _ in series]
            values = [v for _, v in series]
            cost = summary.get("cost_per_1k")
            legend = f"{label} (cost {cost:,.1f} per 1k events)" if cost is not None else label
            ax.plot(times, values, label=legend, linewidth=1.6, linestyle="--" if label == "live" else "-")
        ax.set_title(title)
        ax.set_xlabel("event time (UTC)")
        ax.set_ylabel("cumulative reward (higher is better)")
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
        fig.autofmt_xdate()
        ax.legend(loc="lower left")
        fig.tight_layout()
        fig.savefig(path, metadata={"Software": None})
    finally:
        plt.close(fig)
    return path
