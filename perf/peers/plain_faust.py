"""Peer (b): the decide logic as a Faust user writes it by default.

A `faust.Record` per event, `async for tx in stream` one event at a time, the account's state in a
RocksDB table read and written per event (Faust's JSON codec), and `await topic.send` per action.
Faust's defaults everywhere else (asyncio loop, producer settings, commit interval): this is the
baseline the fast lane in `streams/agents/fastlane.py` was written to beat.

Run as `python -m perf.peers.plain_faust '<PeerConfig JSON>'`; it runs until SIGTERM.
"""

from __future__ import annotations

import faust

from connectors.admin import ensure_topics
from perf.peers.common import Logic, PeerConfig, state_of, transaction


class Tx(faust.Record, serializer="json"):
    transaction_id: str
    account_id: str
    terminal_id: str
    amount: float
    currency: str
    merchant_category: str
    country: str
    channel: str
    event_ts: float


def build_app(cfg: PeerConfig) -> tuple[faust.App, str]:
    """The app and the name of its table's changelog (created up front: see `declare_topics`)."""
    app = faust.App(
        cfg.group,
        broker=f"kafka://{cfg.bootstrap}",
        store="rocksdb://",
        datadir=cfg.state_dir,
        topic_partitions=cfg.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=0.5,
        web_enabled=False,  # `faust worker` would bind a web port per process
        web_port=cfg.web_port,
    )
    events = app.topic(cfg.source, value_type=Tx)
    actions = app.topic(cfg.sink, value_serializer="json")
    accounts = app.Table("accounts", default=None, partitions=cfg.partitions)
    logic = Logic(cfg.policy, cfg.epsilon)

    @app.agent(events)
    async def decide(stream: faust.StreamT[Tx]) -> None:
        async for tx in stream:
            state = state_of(accounts.get(tx.account_id))
            action = logic.decide(transaction(tx.asdict()), state)
            accounts[tx.account_id] = state.to_dict()
            await actions.send(key=tx.account_id, value=action)

    return app, accounts.changelog_topic.get_topic_name()


def main() -> None:
    cfg = PeerConfig.from_argv()
    app, changelog = build_app(cfg)
    # A group whose first assignment races with Faust creating the changelog can hang ("Ignoring
    # missing topic"); creating it first is set-up, not tuning.
    ensure_topics(cfg.settings(), [changelog], config={"cleanup.policy": "compact"})
    faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
