"""Peer (c): the decide logic with Quix Streams, another Python stream processor users pick.

A StreamingDataFrame over the events (Quix's JSON deserializer), a stateful `apply` keeping the
account's state in Quix's RocksDB state store (per message key, changelogged), and `to_topic` for
the action. Quix's defaults otherwise.

One deliberate addition: Quix gives an output record the timestamp of its input record; the bench
measures throughput from the times actions were produced, so `set_timestamp` stamps them with the
wall clock (one cheap call per record).

Run as `python -m perf.peers.quix '<PeerConfig JSON>'`; it runs until SIGTERM.
"""

from __future__ import annotations

import time
from typing import Any

from quixstreams import Application
from quixstreams.state import State

from perf.peers.common import Logic, PeerConfig, state_of, transaction


def build_app(cfg: PeerConfig) -> Application:
    app = Application(
        broker_address=cfg.bootstrap,
        consumer_group=cfg.group,
        auto_offset_reset="earliest",
        state_dir=cfg.state_dir,
        loglevel="WARNING",
    )
    events = app.topic(cfg.source, value_deserializer="json", key_deserializer="str")
    actions = app.topic(cfg.sink, value_serializer="json", key_serializer="str")
    logic = Logic(cfg.policy, cfg.epsilon)

    def decide(value: dict[str, Any], state: State) -> dict[str, Any]:
        account = state_of(state.get("account"))
        action = logic.decide(transaction(value), account)
        state.set("account", account.to_dict())
        return action

    def now_ms(value: Any, key: Any, timestamp: int, headers: Any) -> int:
        return int(time.time() * 1000)

    sdf = app.dataframe(events).apply(decide, stateful=True).set_timestamp(now_ms)
    sdf.to_topic(actions)
    return app


def main() -> None:
    build_app(PeerConfig.from_argv()).run()


if __name__ == "__main__":
    main()
