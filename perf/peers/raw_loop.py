"""Peer (d): a raw confluent-kafka consume -> compute -> produce loop, state in a dict.

The Python ceiling on this broker: no framework, no state store, no changelog, orjson in and out,
librdkafka batching both ways, the same producer settings as ours (`Settings.producer_config`:
linger 5 ms, lz4, acks=all, idempotence). Offsets are stored after a batch's actions are handed to
the producer (not after their acks, which ours waits for) and auto-committed every second.

Run as `python -m perf.peers.raw_loop '<PeerConfig JSON>'`; it runs until SIGTERM.
"""

from __future__ import annotations

import signal
import threading

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from perf.peers.common import Logic, PeerConfig
from streams.scenarios.risk import AccountState

BATCH = 1000


def run(cfg: PeerConfig, stop: threading.Event) -> None:
    settings = cfg.settings()
    consumer = Consumer(
        settings.confluent_config(
            **{
                "group.id": cfg.group,
                "auto.offset.reset": "earliest",
                "enable.auto.offset.store": False,
                "auto.commit.interval.ms": 1000,
                "log_level": 3,
            }
        )
    )
    producer = Producer(settings.producer_config(partitioner="murmur2_random", log_level=3))
    logic = Logic(cfg.policy, cfg.epsilon)
    parse, decide, dumps, produce = logic.scenario.parse, logic.decide, orjson.dumps, producer.produce
    states: dict[str, AccountState] = {}
    consumer.subscribe([cfg.source])
    try:
        while not stop.is_set():
            messages = consumer.consume(num_messages=BATCH, timeout=0.1)
            next_offsets: dict[int, int] = {}
            for msg in messages:
                if msg.error():
                    continue
                tx = parse(msg.value())
                state = states.get(tx.account_id)
                if state is None:
                    state = states[tx.account_id] = AccountState()
                produce(cfg.sink, value=dumps(decide(tx, state)), key=msg.key())
                next_offsets[msg.partition()] = msg.offset() + 1
            producer.poll(0)
            if next_offsets:
                consumer.store_offsets(
                    offsets=[TopicPartition(cfg.source, p, o) for p, o in next_offsets.items()]
                )
    finally:
        producer.flush(30)
        consumer.close()


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(PeerConfig.from_argv(), stop)


if __name__ == "__main__":
    main()
