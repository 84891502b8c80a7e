"""One backtest, source-agnostic: records in, report out (what the CLI and the tests call)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streams.replay.engine import (
    EngineConfig,
    LiveDecision,
    PolicySpec,
    ReplayEngine,
    ReplayResult,
    gc_paused,
)
from streams.replay.outcomes import PartitionedStats
from streams.replay.policies import resolve_all
from streams.replay.report import build_report
from streams.replay.timeline import RawRecord, build_timeline
from streams.scenarios import build_scenario
from streams.settings import Settings


@dataclass(slots=True)
class Backtest:
    result: ReplayResult
    report: dict[str, Any]
    records: int
    specs: list[PolicySpec]


def run_backtest(
    settings: Settings,
    records: Sequence[RawRecord],
    policies: list[str],
    *,
    learning: bool = True,
    seed: int | None = None,
    live: Mapping[str, LiveDecision] | None = None,
    ope_method: str = "normal",
    progress: Callable[[int], None] | None = None,
) -> Backtest:
    """Replay `records` for `policies` (names or snapshot:FILE) with the settings' scenario and knobs.

    `progress(n)` counts 2 units per record: one parsing it, one replaying it.
    """
    stats = PartitionedStats(settings.partitions)
    scenario = build_scenario(settings, stats)
    specs = resolve_all(policies, scenario, settings)
    engine = ReplayEngine(
        scenario, stats, specs, EngineConfig.from_settings(settings, learning=learning, seed=seed), live
    )
    n = len(records)
    with gc_paused():
        timeline = build_timeline(scenario, records, progress)
        replay_progress = None if progress is None else (lambda i: progress(n + i))
        result = engine.run(timeline, replay_progress)
        report = build_report(result, ope_method=ope_method, seed=seed or 0)
    return Backtest(result, report, n, specs)
