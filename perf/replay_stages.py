"""Where a columnar replay's time goes: each stage timed on its own (CPU and wall), per event.

    python -m perf.replay_stages /tmp/risk-1m.jsonl [--runs 3]

Runs the same calls as `agentstream replay --input FILE -p rules -p qtable --chart PNG` (columnar
engine), stage by stage, and prints microseconds per event for each (median of the runs). The
process start and imports are timed separately by the caller (`/usr/bin/time`).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from streams.core.columnar import Groups
from streams.replay import fastpath
from streams.replay.chart import write_chart
from streams.replay.engine import EngineConfig, PolicyRun
from streams.replay.outcomes import PartitionedStats
from streams.replay.policies import resolve_all
from streams.replay.report import build_report, to_json
from streams.replay.risk_input import count_lines, map_file, read_columns
from streams.scenarios import build_scenario
from streams.scenarios.risk import draw_digests_for
from streams.settings import load_settings


def _timed(stages: dict[str, tuple[float, float]], name: str, fn: Callable[[], Any]) -> Any:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    stages[name] = (time.process_time() - cpu, time.perf_counter() - wall)
    return out


def one_run(path: Path) -> tuple[dict[str, tuple[float, float]], int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSTREAM_")}
    settings = load_settings(env=env)
    scenario = build_scenario(settings, PartitionedStats(settings.partitions))
    specs = resolve_all(["rules", "qtable"], scenario, settings)
    config = EngineConfig.from_settings(settings)
    stages: dict[str, tuple[float, float]] = {}
    gc.disable()
    data = _timed(stages, "map file + count lines (progress total)", lambda: _counted(map_file(path)))
    cols = _timed(stages, "parse + validate (columns)", lambda: read_columns(scenario, path, None, data))
    tl = _timed(stages, "event-time order", lambda: fastpath._Timeline.of(cols))
    accounts = Groups.of(tl.ev_account)
    label_event = _timed(
        stages, "join plan (labels -> decisions)", lambda: fastpath._join(tl, accounts, config)
    )
    state, _ = _timed(stages, "perception (observe, all events)",
                      lambda: fastpath._perceive(tl, cols, accounts, config.partitions))  # fmt: skip
    _timed(stages, "draws (2 blake2b per event)", lambda: draw_digests_for(tl.ev_tid))
    fraud = np.zeros(tl.events, dtype=bool)
    fraud[label_event] = tl.lb_fraud
    run = PolicyRun("qtable", len(scenario.actions), tl.events, {})
    _timed(stages, "qtable: draws + sequential learning loop", lambda: fastpath._learner(
        specs[1].policy, run, config, tl, state, label_event, fraud, scenario, None))  # fmt: skip
    _timed(stages, "whole columnar replay (both policies)",
           lambda: fastpath.run_columnar(scenario, specs, config, cols))  # fmt: skip
    result = fastpath.run_columnar(scenario, specs, config, cols)
    report = _timed(stages, "report", lambda: build_report(result))
    _timed(stages, "report JSON", lambda: to_json(report))
    with tempfile.TemporaryDirectory() as tmp:
        _timed(stages, "chart (matplotlib, PNG)", lambda: write_chart(report, Path(tmp) / "c.png"))
    gc.enable()
    return stages, result.events


def _counted(data: Any) -> Any:
    count_lines(data)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [one_run(args.input) for _ in range(args.runs)]
    events = runs[0][1]
    print(f"{events:,} events, median of {args.runs} runs, load {os.getloadavg()[0]:.1f}")
    print(f"{'stage':44} {'CPU s':>7} {'wall s':>7} {'us/event CPU':>13}")
    for name in runs[0][0]:
        cpu = statistics.median(r[0][name][0] for r in runs)
        wall = statistics.median(r[0][name][1] for r in runs)
        print(f"{name:44} {cpu:7.2f} {wall:7.2f} {1e6 * cpu / events:13.2f}")


if __name__ == "__main__":
    main()
