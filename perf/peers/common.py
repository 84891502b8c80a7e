"""What every peer shares: its configuration (one JSON argument) and the per-event decision logic.

The logic is the decide agent's core for one event, minus what only ours does (pending decisions
kept for the feedback join, per-partition idempotence offsets, expiry): observe the account's state
BEFORE the transaction, choose with the same policy (deterministic draws seeded by the decision
id), fold the transaction in, render the action. Peers differ only in how records reach it, where
the state lives and how actions leave: the things the benchmark compares.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from streams.core.policies import make_policy
from streams.core.scenario import Decision, Draw
from streams.core.table import Row
from streams.scenarios.risk import TX_FIELDS, AccountState, RiskScenario, Transaction
from streams.settings import Settings


@dataclass(frozen=True)
class PeerConfig:
    """Where a peer reads and writes; the bench passes it as the child's only argument."""

    bootstrap: str
    source: str  # the pre-loaded events topic
    sink: str  # this run's actions topic
    group: str  # consumer group / application id, unique per run
    partitions: int
    state_dir: str  # RocksDB folder, unique per run
    policy: str = "qtable"
    epsilon: float = 0.02
    web_port: int = 0

    def to_arg(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_argv(cls, argv: Sequence[str] | None = None) -> PeerConfig:
        args = sys.argv[1:] if argv is None else argv
        if len(args) != 1:
            raise SystemExit("usage: python -m perf.peers.<name> '<PeerConfig JSON>'")
        return cls(**orjson.loads(args[0]))

    def settings(self) -> Settings:
        return Settings(bootstrap_servers=self.bootstrap, partitions=self.partitions)


class Logic:
    """The shared decision: the same scenario, policy and action record as the decide agent."""

    def __init__(self, policy: str = "qtable", epsilon: float = 0.02) -> None:
        self.scenario = RiskScenario()
        self.policy = make_policy(
            policy, self.scenario.actions, self.scenario.baseline, epsilon=epsilon, temperature=50.0
        )
        self.rows: dict[str, Row] = {}  # the decision table: the workload carries no feedback

    def decide(self, tx: Transaction, state: AccountState) -> dict[str, Any]:
        """Observe, choose, THEN update `state` in place; returns the action as a dict."""
        scenario = self.scenario
        decision_id = scenario.decision_id(tx)
        obs = scenario.observe(state, tx)
        row = self.rows.get(obs.state_key)
        index, prob = self.policy.choose(row, obs, Draw(decision_id))
        scenario.update(state, tx)
        return Decision(
            decision_id=decision_id,
            entity=tx.account_id,
            action=scenario.actions[index],
            prob=prob,
            policy=self.policy.name,
            policy_version=row.version if row is not None else 0,
            state_key=obs.state_key,
            event_ts=tx.event_ts,
            decision_ts=time.time(),
            event_id=tx.transaction_id,
            features=obs.features,
        ).to_dict()


def transaction(fields: Mapping[str, Any]) -> Transaction:
    """A Transaction from fields a framework already decoded (a Faust record, a Quix dict)."""
    return Transaction(*(fields[name] for name in TX_FIELDS))


def state_of(stored: Mapping[str, Any] | None) -> AccountState:
    """The account state kept as a JSON dict by the frameworks' own tables (None: a new account)."""
    return AccountState() if stored is None else AccountState.from_dict(stored)
