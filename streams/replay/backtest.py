"""One backtest, source-agnostic: records in, report out (what the CLI and the tests call).

A source (records in memory, a JSONL file, the scenario's topics) is read as columns for the
columnar engine, or as records for the per-event one.

Two engines give the same results: the columnar one (`fastpath.py`, risk replays whose labels
simply join their decisions) and the per-event one (`engine.py`, everything).
`engine="auto"` takes the columnar one when it applies and says why not otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from streams.replay.engine import (
    EngineConfig,
    LiveDecision,
    PolicySpec,
    ReplayEngine,
    ReplayResult,
    gc_paused,
)
from streams.replay.fastpath import NotColumnar, check_columnar, run_columnar
from streams.replay.live_log import LiveLog
from streams.replay.outcomes import PartitionedStats
from streams.replay.policies import resolve_all
from streams.replay.read_ahead import ReadAhead
from streams.replay.report import build_report
from streams.replay.risk_input import (
    Buffer,
    RiskColumns,
    columns_from_lines,
    columns_from_records,
    read_columns,
)
from streams.replay.sources import Bound, ScenarioRange, read_jsonl, read_live_actions
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
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage, in their order


class Source(Protocol):
    """A backtest's input, readable as columns (the columnar engine) and as records (the per-event
    engine, also after the columnar one declined), and the live decisions to compare with (asked
    for after the records: a topic reader reads them last)."""

    def columns(self, scenario: Any, progress: Callable[[int], None] | None) -> RiskColumns: ...

    def records(self) -> Sequence[RawRecord]: ...

    def live(self) -> Mapping[str, LiveDecision] | None: ...

    def close(self) -> None: ...  # what it still holds open (a reading child process)


@dataclass(slots=True)
class RecordList:
    items: Sequence[RawRecord]
    logged: Mapping[str, LiveDecision] | None = None

    def columns(self, scenario: Any, progress: Callable[[int], None] | None) -> RiskColumns:
        return columns_from_records(scenario, self.items, progress)

    def records(self) -> Sequence[RawRecord]:
        return self.items

    def live(self) -> Mapping[str, LiveDecision] | None:
        return self.logged

    def close(self) -> None:
        pass


@dataclass(slots=True)
class JsonlFile:
    """A JSONL file whose bytes are `data` (`map_file`): the columnar engine reads the bytes."""

    path: Path
    data: Buffer
    logged: Mapping[str, LiveDecision] | None = None

    def columns(self, scenario: Any, progress: Callable[[int], None] | None) -> RiskColumns:
        return read_columns(scenario, self.path, progress, self.data)

    def records(self) -> Sequence[RawRecord]:
        return list(read_jsonl(self.path))

    def live(self) -> Mapping[str, LiveDecision] | None:
        return self.logged

    def close(self) -> None:
        pass


@dataclass(slots=True)
class Topics:
    """The scenario's topics over a range, and the live actions from `live_since` on (None: no
    live comparison). For the columnar engine a child process reads them (`ReadAhead`, from
    `start()` on: it overlaps whatever comes before the replay) and sends each fetch as one buffer
    of lines, then the live log."""

    range: ScenarioRange
    live_since: Bound | None = None
    actions: tuple[str, ...] = ()
    ahead: ReadAhead | None = None
    logged: LiveLog | None = None

    def start(self) -> Topics:
        if self.ahead is None and self.logged is None:
            live = None if self.live_since is None else (self.live_since, self.actions)
            self.ahead = ReadAhead(self.range, live)
        return self

    def columns(self, scenario: Any, progress: Callable[[int], None] | None) -> RiskColumns:
        ahead = self.start().ahead
        assert ahead is not None
        return columns_from_lines(scenario, ahead.lines(), progress)

    def records(self) -> Sequence[RawRecord]:
        self.live()  # what the reading child still has to send, before it is stopped
        self.close()
        return self.range.records()

    def live(self) -> LiveLog | None:
        if self.logged is None and self.live_since is not None:
            if self.ahead is not None and self.ahead.live_pending:
                self.logged = self.ahead.live()
            else:
                self.close()
                self.logged = read_live_actions(self.range.settings, self.actions, self.live_since)
        return self.logged or None  # an empty log: nothing to compare with

    def close(self) -> None:
        if self.ahead is not None:
            self.ahead.close()
            self.ahead = None


def run_backtest(
    settings: Settings,
    records: Sequence[RawRecord],
    policies: list[str],
    live: Mapping[str, LiveDecision] | None = None,
    **options: Any,
) -> Backtest:
    """`backtest` of records in memory, compared with the `live` decisions if given."""
    return backtest(settings, RecordList(records, live), policies, **options)


def backtest(
    settings: Settings,
    source: Source,
    policies: list[str],
    *,
    learning: bool = True,
    seed: int | None = None,
    ope_method: str = "normal",
    progress: Callable[[int], None] | None = None,
    engine: str = "auto",
    keep_state_keys: bool = False,
) -> Backtest:
    """Replay `source` for `policies` (names or snapshot:FILE) with the settings' scenario and knobs.

    `progress(n)` counts 2 units per record: one reading it, one replaying it.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
    stats = PartitionedStats(settings.partitions)
    scenario = build_scenario(settings, stats)
    specs = resolve_all(policies, scenario, settings)
    config = EngineConfig.from_settings(settings, learning=learning, seed=seed)
    replayer = ReplayEngine(scenario, stats, specs, config, None, keep_state_keys)
    seconds: dict[str, float] = {}
    with gc_paused():
        result, used, n = _columnar(replayer, source, engine, progress, seconds)
        if result is None:
            with _timed(seconds, "read + parse"):
                records = source.records()
                replayer.live = source.live()
                n = len(records)
                timeline = build_timeline(scenario, records, progress)
            with _timed(seconds, "replay"):
                result = replayer.run(timeline, _after(progress, n))
        with _timed(seconds, "report"):
            report = build_report(result, ope_method=ope_method, seed=seed or 0)
    return Backtest(result, report, n, specs, used, seconds)


@contextmanager
def _timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    began = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - began


def _after(progress: Callable[[int], None] | None, n: int) -> Callable[[int], None] | None:
    """The replay's progress, after the n units of reading."""
    return None if progress is None else (lambda i: progress(n + i))


def _columnar(
    replayer: ReplayEngine,
    source: Source,
    engine: str,
    progress: Callable[[int], None] | None,
    seconds: dict[str, float],
) -> tuple[ReplayResult | None, str, int]:
    """(result, which engine, records read) of the columnar engine, or (None, why not, 0)."""
    if engine == "scalar":
        return None, "scalar", 0
    try:
        check_columnar(replayer.scenario, replayer.specs)
        with _timed(seconds, "read + parse"):
            cols = source.columns(replayer.scenario, progress)
        with _timed(seconds, "replay"):
            result = run_columnar(
                replayer.scenario,
                replayer.specs,
                replayer.config,
                cols,
                _after(progress, cols.records),
                replayer.keep_state_keys,
                source.live,
            )
        return result, "columnar", cols.records
    except NotColumnar as exc:
        if engine == "columnar":
            raise
        return None, f"scalar (the columnar engine does not cover: {exc})", 0
