"""Thin Faust adapters over the pure core: each agent takes batches of raw records, runs the
scenario/policy/learning code on them synchronously, writes its tables, then emits its output.

Doing all table reads and writes of a batch without an `await` in between keeps the agents that
share a worker (decide and join touch the same entity's pending decisions) from interleaving.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.app import Pipeline


def register_agents(pipeline: Pipeline) -> None:
    from streams.agents.decide import register_decide
    from streams.agents.join import register_join
    from streams.agents.learn import register_learn
    from streams.agents.reporting import register_reporting

    register_decide(pipeline)
    register_join(pipeline)
    register_learn(pipeline)
    register_reporting(pipeline)
