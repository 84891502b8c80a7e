"""The traffic closed loop over Kafka on the embedded broker: SUMO -> events -> worker -> actions -> signals.

A few simulated minutes on the single intersection, with a real worker in a child process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("libsumo", reason="traffic extra not installed: pip install .[traffic]")

from connectors.admin import record_count
from connectors.collect import wait_for
from connectors.traffic_kafka import KafkaLink, run_over_kafka, traffic_settings
from streams.scenarios.traffic import TrafficScenario
from streams.settings import Settings
from tests.integration.harness import counts, workers

pytestmark = pytest.mark.integration

DURATION = 300  # simulated seconds of demand; the run then drains the intersection


def test_every_reading_gets_an_action_the_simulator_applies_and_feedback_is_learned(
    settings: Settings, tmp_path: Path
) -> None:
    s = traffic_settings(settings, policy="qtable", label="learned", epsilon=0.1)
    sc = TrafficScenario()
    chosen: list[tuple[int, str]] = []  # (phase at the reading, action the worker chose)
    with workers(s, 1), KafkaLink(s, sc, timeout_s=15.0) as link:
        decide = link.decide

        def spy(events: list[bytes]) -> list[dict[str, Any]]:
            actions = decide(events)
            phases = {sc.decision_id(r): r.phase for r in map(sc.parse, events)}
            chosen.extend((phases[a["decision_id"]], a["action"]) for a in actions)
            return actions

        link.decide = spy  # type: ignore[method-assign]
        result = run_over_kafka(link, "single", "learned", DURATION, 3, run="t", cache_dir=tmp_path / "sumo")
        sent = result.extra["feedback"]
        assert wait_for(lambda: counts(s).get("learning_updates", 0) >= sent, 30), counts(s)
        worker = counts(s)
    signal = result.summary.signal_counts["A0"]
    assert result.readings == result.decisions == result.extra["published"] == len(chosen) > 20
    assert signal["missing"] == 0, "a reading got no action within the step timeout"
    assert result.extra["stray"] == 0 and len(result.extra["latencies_ms"]) == result.readings
    assert signal["applied"] == result.readings and signal["invalid"] == signal["too_early"] == 0
    # Every reading comes after the minimum green, so each action that names another phase switches.
    assert signal["switches"] == sum(phase != int(action) for phase, action in chosen) > 0
    assert worker["decisions"] == result.readings
    assert sent == result.readings - 1  # every decision but the last is judged by the next reading
    assert worker["learning_updates"] == sent
    assert result.summary.vehicles_completed > 30 and result.summary.vehicles_unfinished == 0


def test_fixed_time_publishes_every_reading_and_decides_locally(settings: Settings, tmp_path: Path) -> None:
    s = traffic_settings(settings, policy="rules", label="fixed_time")
    with KafkaLink(s) as link:
        result = run_over_kafka(
            link, "single", "fixed_time", DURATION, 3, run="t", cache_dir=tmp_path / "sumo"
        )
    assert result.readings == result.decisions == result.extra["published"] > 20
    assert result.extra["answered"] == result.extra["feedback"] == 0
    assert result.summary.signal_counts["A0"]["missing"] == 0
    assert wait_for(lambda: record_count(s, s.topics().events) == result.readings, 10)
