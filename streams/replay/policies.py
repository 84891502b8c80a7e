"""`--policy` values for a replay: a policy name from the core, or `snapshot:FILE` (a saved table)."""

from __future__ import annotations

from streams.core.policies import POLICY_NAMES, make_policy
from streams.core.scenario import Scenario
from streams.replay.engine import LIVE, PolicySpec
from streams.replay.snapshot import read
from streams.settings import Settings

SNAPSHOT_PREFIX = "snapshot:"


def resolve(spec: str, scenario: Scenario, settings: Settings) -> PolicySpec:
    """A policy name starts from an empty table (as a new deployment would); a snapshot starts from
    its rows with the exploration parameters it was saved with."""
    if spec.startswith(SNAPSHOT_PREFIX):
        snap = read(spec[len(SNAPSHOT_PREFIX) :])
        if snap.scenario != scenario.name or snap.actions != tuple(scenario.actions):
            raise ValueError(f"{spec}: a {snap.scenario} table {list(snap.actions)}, not {scenario.name}")
        policy = make_policy(
            snap.policy,
            scenario.actions,
            scenario.baseline,
            epsilon=snap.epsilon,
            temperature=snap.temperature,
        )
        return PolicySpec(spec, policy, snap.rows)
    if spec not in POLICY_NAMES:
        raise ValueError(f"unknown policy {spec!r}; valid: {', '.join(POLICY_NAMES)} or snapshot:FILE")
    policy = make_policy(
        spec, scenario.actions, scenario.baseline, epsilon=settings.epsilon, temperature=settings.temperature
    )
    return PolicySpec(spec, policy)


def resolve_all(specs: list[str], scenario: Scenario, settings: Settings) -> list[PolicySpec]:
    if not specs:
        raise ValueError("give at least one --policy")
    if len(set(specs)) != len(specs):
        raise ValueError(f"a policy is listed twice: {specs}")
    if LIVE in specs:
        raise ValueError(f"{LIVE!r} is the report's name for the live decisions, not a policy")
    return [resolve(spec, scenario, settings) for spec in specs]
