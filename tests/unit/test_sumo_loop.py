"""The SUMO connector and the Kafka-free closed loop on the single intersection (short runs)."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sumo", reason="traffic extra not installed: pip install .[traffic]")
if find_spec("libsumo") is None and find_spec("traci") is None:
    pytest.skip("traffic extra not installed: pip install .[traffic]", allow_module_level=True)

from connectors.sumo import SumoSim, yellow_between
from connectors.sumo_net import NETWORKS, ensure_demand, ensure_network
from connectors.traffic_loop import (
    InProcessAgent,
    LearnConfig,
    max_pressure_chooser,
    run_closed_loop,
)
from streams.scenarios.traffic import TrafficScenario

DURATION = 300


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sumo")


def test_yellow_between_holds_shared_greens() -> None:
    assert yellow_between("GGgrr", "rrGGG") == "yygrr"


def test_switch_goes_through_yellow_and_respects_min_green(cache: Path) -> None:
    spec = NETWORKS["single"]
    net = ensure_network(spec, cache)
    routes = ensure_demand(spec, net, duration_s=DURATION, seed=1, cache_dir=cache)
    with SumoSim(net, routes, cache / "switch") as sim:
        tl = sim.traci.trafficlight
        assert sim.due() == []
        sim.step(10)
        assert sim.due() == ["A0"]
        assert sim.apply("A0", "2") is True
        assert "y" in tl.getRedYellowGreenState("A0")
        sim.step(2)
        assert sim.signals["A0"].phase == 0 and sim.due() == []
        sim.step(1)
        assert sim.signals["A0"].phase == 2
        assert tl.getRedYellowGreenState("A0") == sim.signals["A0"].green_states[2]
        assert sim.apply("A0", "0") is False  # 0 s into the new green: too early
        assert sim.apply("A0", "7") is False
        assert sim.apply("A0", None) is False
        counts = sim.signals["A0"].counts
    assert counts == {"applied": 2, "switches": 1, "missing": 1, "invalid": 1, "too_early": 1}


def test_every_reading_gets_an_action_the_simulator_applies(cache: Path) -> None:
    sc = TrafficScenario()
    agent = InProcessAgent(sc, "max_pressure", max_pressure_chooser(sc))
    seen: list[bytes] = []
    decided: list[dict[str, Any]] = []

    def decide(events: list[bytes]) -> list[dict[str, Any]]:
        seen.extend(events)
        out = agent.decide(events)
        decided.extend(out)
        return out

    result = run_closed_loop("single", "max_pressure", DURATION, 1, decide, cache_dir=cache)
    counts = result.summary.signal_counts["A0"]
    assert result.readings == result.decisions == len(seen) == len(decided) > 20
    assert counts["applied"] == result.readings
    assert counts["missing"] == counts["invalid"] == counts["too_early"] == 0
    assert 0 < counts["switches"] < result.readings
    assert {d["decision_id"] for d in decided} == {sc.decision_id(sc.parse(raw)) for raw in seen}
    s = result.summary
    assert s.vehicles_completed > 30 and s.vehicles_unfinished == 0
    assert 0.0 <= s.avg_wait_s < s.avg_travel_s
    assert s.avg_travel_s > 400 / 13.89  # 400 m at the speed limit at best
    assert s.queue_series and s.mean_queue >= 0.0
    assert s.sim_seconds >= DURATION


def test_no_answer_keeps_the_phase(cache: Path) -> None:
    result = run_closed_loop("single", "max_pressure", DURATION, 1, lambda events: [], cache_dir=cache)
    counts = result.summary.signal_counts["A0"]
    assert result.decisions == 0 and counts["missing"] == result.readings > 0
    assert counts["switches"] == 0


def test_learned_policy_learns_online(cache: Path) -> None:
    table: dict = {}
    result = run_closed_loop(
        "single", "learned", DURATION, 2, table=table, learn=LearnConfig(), run="t", cache_dir=cache
    )
    # Every decision but the last is judged by the next reading and applied to the table.
    assert result.learning_updates == result.readings - 1
    assert table and all(key.startswith("p") for key in table)
    assert result.summary.vehicles_completed > 30
