"""The scenarios a worker can run, by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.core.scenario import Scenario
from streams.settings import Settings

SCENARIOS = ("risk", "traffic")


def build_scenario(settings: Settings, outcome_stats: Mapping[str, Any] | None = None) -> Scenario:
    """The scenario named by `settings.scenario`; `outcome_stats` is where learned side statistics
    (risk: fraud counts per terminal) are read from."""
    if settings.scenario == "risk":
        from streams.scenarios.risk import RiskScenario

        return RiskScenario(
            terminal_stats=outcome_stats,
            review_fee=settings.review_fee,
            friction_cost=settings.friction_cost,
        )
    if settings.scenario == "traffic":
        from streams.scenarios.traffic import TrafficScenario

        return TrafficScenario()
    raise ValueError(f"unknown scenario {settings.scenario!r}; valid: {', '.join(SCENARIOS)}")
