"""One backtest, source-agnostic: records in, report out (what the CLI and the tests call).

Two engines give the same results: the columnar one (`fastpath.py`, risk replays without live
comparison whose labels simply join their decisions) and the per-event one (`engine.py`, everything).
`engine="auto"` takes the columnar one when it applies and says why not otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.replay.engine import (
    EngineConfig,
    LiveDecision,
    PolicySpec,
    ReplayEngine,
    ReplayResult,
    gc_paused,
)
from streams.replay.fastpath import NotColumnar, check_columnar, run_columnar
from streams.replay.outcomes import PartitionedStats
from streams.replay.policies import resolve_all
from streams.replay.report import build_report
from streams.replay.risk_input import Buffer, columns_from_records, count_lines, read_columns
from streams.replay.sources import read_jsonl
from streams.replay.timeline import RawRecord, build_timeline
from streams.scenarios import build_scenario
from streams.settings import Settings

ENGINES = ("auto", "columnar", "scalar")


@dataclass(slots=True)
class Backtest:
    result: ReplayResult
    report: dict[str, Any]
    records: int
    specs: list[PolicySpec]
    engine: str = "scalar"  # which engine ran, and why not the columnar one


@dataclass(slots=True)
class _Setup:
    scenario: Any
    specs: list[PolicySpec]
    engine: ReplayEngine

    @classmethod
    def of(
        cls, settings: Settings, policies: list[str], learning: bool, seed: int | None,
        live: Mapping[str, LiveDecision] | None, keep_state_keys: bool,
    ) -> _Setup:  # fmt: skip
        stats = PartitionedStats(settings.partitions)
        scenario = build_scenario(settings, stats)
        specs = resolve_all(policies, scenario, settings)
        config = EngineConfig.from_settings(settings, learning=learning, seed=seed)
        return cls(scenario, specs, ReplayEngine(scenario, stats, specs, config, live, keep_state_keys))


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
    engine: str = "auto",
    keep_state_keys: bool = False,
) -> Backtest:
    """Replay `records` for `policies` (names or snapshot:FILE) with the settings' scenario and knobs.

    `progress(n)` counts 2 units per record: one parsing it, one replaying it.
    """
    setup = _Setup.of(settings, policies, learning, seed, live, keep_state_keys)
    n = len(records)
    with gc_paused():
        result, used, _ = _columnar(
            setup, engine, lambda: columns_from_records(setup.scenario, records, progress), n, progress
        )
        if result is None:
            result = _scalar(setup, records, progress)
        report = build_report(result, ope_method=ope_method, seed=seed or 0)
    return Backtest(result, report, n, setup.specs, used)


def run_backtest_file(
    settings: Settings,
    path: Path,
    data: Buffer,
    policies: list[str],
    *,
    learning: bool = True,
    seed: int | None = None,
    live: Mapping[str, LiveDecision] | None = None,
    ope_method: str = "normal",
    progress: Callable[[int], None] | None = None,
    engine: str = "auto",
) -> Backtest:
    """`run_backtest` of a JSONL file whose bytes are `data` (`map_file`); the columnar engine reads
    the bytes directly, the per-event one reads the file's records."""
    setup = _Setup.of(settings, policies, learning, seed, live, False)
    lines = count_lines(data)
    with gc_paused():
        result, used, records = _columnar(
            setup, engine, lambda: read_columns(setup.scenario, path, progress, data), lines, progress
        )
        if result is None:
            records_read = list(read_jsonl(path))
            records = len(records_read)
            result = _scalar(setup, records_read, progress)
        report = build_report(result, ope_method=ope_method, seed=seed or 0)
    return Backtest(result, report, records, setup.specs, used)


def _columnar(
    setup: _Setup, engine: str, columns: Callable[[], Any], n: int, progress: Callable[[int], None] | None
) -> tuple[ReplayResult | None, str, int]:
    """(result, which engine, records read) of the columnar engine, or (None, why not, 0)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
    if engine == "scalar":
        return None, "scalar", 0
    replay_progress = None if progress is None else (lambda i: progress(n + i))
    try:
        check_columnar(setup.scenario, setup.specs, setup.engine.live)
        cols = columns()
        result = run_columnar(
            setup.scenario,
            setup.specs,
            setup.engine.config,
            cols,
            replay_progress,
            setup.engine.keep_state_keys,
        )
        return result, "columnar", cols.records
    except NotColumnar as exc:
        if engine == "columnar":
            raise
        return None, f"scalar (the columnar engine does not cover: {exc})", 0


def _scalar(
    setup: _Setup, records: Sequence[RawRecord], progress: Callable[[int], None] | None
) -> ReplayResult:
    n = len(records)
    timeline = build_timeline(setup.scenario, records, progress)
    replay_progress = None if progress is None else (lambda i: progress(n + i))
    return setup.engine.run(timeline, replay_progress)
