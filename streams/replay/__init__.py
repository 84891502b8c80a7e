"""Replay and backtesting: run policies over recorded events and feedback through the pure core.

Pure modules (no Kafka, no Faust): `timeline` (parse + event-time merge), `outcomes` (per-partition
side statistics), `engine` (the replay loop), `report`, `ope`, `policies`. Kafka-facing modules:
`sources`, `snapshot`, `republish`, `reset`; `chart` draws the PNG; `cli` wires the commands.
"""
