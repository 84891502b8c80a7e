"""The traffic demo chart: vehicles queued at the signals over simulated time, one line per policy (PNG).

Queue length over time rather than one average: the rush hour in the middle of the demand shows
where a policy falls behind (its queue builds up) and how fast it clears the backlog afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

POLICY_ORDER = ("fixed_time", "max_pressure", "learned")


def write_queue_chart(summary: dict[str, Any], path: str | Path) -> Path:
    """Plot `summary[policy]["queue_series"]` ((interval start s, mean halting) pairs) for each policy."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
    try:
        for policy in POLICY_ORDER:
            result = summary.get(policy)
            if not result or not result.get("queue_series"):
                continue
            minutes = [t / 60.0 for t, _ in result["queue_series"]]
            queues = [q for _, q in result["queue_series"]]
            label = f"{policy} (avg wait {result['avg_wait_s']:.1f} s/vehicle)"
            ax.plot(minutes, queues, label=label, linewidth=1.6)
        start, end = summary["rush_hour_s"]
        ax.axvspan(start / 60.0, end / 60.0, color="grey", alpha=0.12, label="rush hour (peak demand)")
        ax.set_title(f"Traffic signals over Kafka: {summary['net']}, demand seed {summary['seed']}")
        ax.set_xlabel("simulated time (minutes)")
        ax.set_ylabel("halting vehicles at the signals (mean per minute)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right")
        fig.tight_layout()
        fig.savefig(path, metadata={"Software": None})
    finally:
        plt.close(fig)
    return path
