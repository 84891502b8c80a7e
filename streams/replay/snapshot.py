"""Decision-table snapshots: the live table (or a backtested one) as a versioned JSON file.

A snapshot carries the policy parameters it was learned under, so `--policy snapshot:FILE` replays
it with the same exploration, and `promote` can check it belongs to the app's scenario. The live
table is the compacted changelog `<app_id>-decisions-changelog` (key: state key, value: a row);
saving reads it to its end keeping the latest value per key, promoting writes every row to the
partition Faust reads it from (murmur2 of the key) and tombstones the keys the snapshot lacks, so
the table workers recover is exactly the snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from streams.core.table import Row
from streams.settings import Settings

FORMAT = "agentstream.decision-table"
VERSION = 1


class SnapshotError(ValueError):
    """A file that is not a snapshot this version can read, or one that does not fit the app."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    scenario: str
    actions: tuple[str, ...]
    policy: str
    epsilon: float
    temperature: float
    learning_rate: float
    discount: float
    created: str
    source: str
    rows: dict[str, Row]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "created": self.created,
            "source": self.source,
            "scenario": self.scenario,
            "actions": list(self.actions),
            "policy": {
                "name": self.policy,
                "epsilon": self.epsilon,
                "temperature": self.temperature,
                "learning_rate": self.learning_rate,
                "discount": self.discount,
            },
            "row_count": len(self.rows),
            "rows": {key: self.rows[key].to_dict() for key in sorted(self.rows)},
        }


def changelog_topic(settings: Settings) -> str:
    """Faust names a table's changelog `<app id>-<table>-changelog`; the table is `decisions`."""
    return f"{settings.app_id}-decisions-changelog"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def from_settings(
    settings: Settings, rows: Mapping[str, Row], actions: tuple[str, ...], source: str
) -> Snapshot:
    """A snapshot of `rows` stamped with the settings' policy parameters."""
    return Snapshot(
        scenario=settings.scenario,
        actions=tuple(actions),
        policy=settings.policy,
        epsilon=settings.epsilon,
        temperature=settings.temperature,
        learning_rate=settings.learning_rate,
        discount=settings.discount,
        created=now_iso(),
        source=source,
        rows=dict(rows),
    )


def write(snapshot: Snapshot, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(snapshot.to_dict(), option=orjson.OPT_INDENT_2))
    return path


def read(path: str | Path) -> Snapshot:
    """Read and validate a snapshot file (any problem is a SnapshotError naming the file)."""
    path = Path(path)
    if not path.is_file():
        raise SnapshotError(f"no such snapshot file: {path}")
    try:
        d = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"{path}: not JSON ({exc})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise SnapshotError(f"{path}: not a decision-table snapshot (format {FORMAT!r} expected)")
    if d.get("version") != VERSION:
        raise SnapshotError(f"{path}: snapshot version {d.get('version')!r}; this build reads {VERSION}")
    try:
        actions = tuple(str(a) for a in d["actions"])
        policy = d["policy"]
        rows = {str(k): Row.from_dict(v) for k, v in d["rows"].items()}
        snapshot = Snapshot(
            scenario=str(d["scenario"]),
            actions=actions,
            policy=str(policy["name"]),
            epsilon=float(policy["epsilon"]),
            temperature=float(policy["temperature"]),
            learning_rate=float(policy["learning_rate"]),
            discount=float(policy["discount"]),
            created=str(d["created"]),
            source=str(d.get("source", "")),
            rows=rows,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SnapshotError(f"{path}: malformed snapshot ({type(exc).__name__}: {exc})") from None
    bad = [k for k, row in rows.items() if len(row.q) != len(actions)]
    if bad:
        raise SnapshotError(f"{path}: rows with other than {len(actions)} action values: {bad[:3]}")
    if d.get("row_count") != len(rows):
        raise SnapshotError(f"{path}: row_count {d.get('row_count')} but {len(rows)} rows (truncated?)")
    return snapshot


def load_table(path: str | Path) -> dict[str, Row]:
    """The rows of a snapshot (for `--policy snapshot:FILE`)."""
    return read(path).rows


# --- the live table --------------------------------------------------------------------------


def live_rows(settings: Settings) -> dict[str, Row]:
    """The live decision table: the latest value per key of its changelog (tombstones delete)."""
    from streams.replay.sources import OPEN, SourceError, read_topic, resolve_range

    topic = changelog_topic(settings)
    try:
        ranges = resolve_range(settings, topic, OPEN, OPEN)
    except SourceError:
        raise SnapshotError(
            f"no decision table for app {settings.app_id!r}: topic {topic} is missing"
        ) from None
    latest: dict[str, bytes | None] = {}
    for rec in read_topic(settings, topic, ranges, tombstones=True):
        if rec.key is not None:
            latest[rec.key.decode()] = rec.value
    return {key: Row.from_dict(orjson.loads(value)) for key, value in latest.items() if value is not None}


def save(settings: Settings, path: str | Path) -> Snapshot:
    """Write the live decision table, with the settings' policy parameters, to `path`."""
    from streams.scenarios import build_scenario

    actions = tuple(build_scenario(settings).actions)
    snapshot = from_settings(settings, live_rows(settings), actions, source=changelog_topic(settings))
    write(snapshot, path)
    return snapshot


def promote(settings: Settings, path: str | Path) -> int:
    """Make the snapshot the live decision table; refuses while the app's workers run.

    Returns the number of rows written. Keys in the live table but not in the snapshot get
    tombstones, so recovering workers end with exactly the snapshot's rows.
    """
    from confluent_kafka import Producer

    from connectors.admin import ensure_topics
    from connectors.partitioning import partition_for
    from streams.replay.groups import require_idle
    from streams.scenarios import build_scenario

    snapshot = read(path)
    actions = tuple(build_scenario(settings).actions)
    if snapshot.scenario != settings.scenario or snapshot.actions != actions:
        raise SnapshotError(
            f"snapshot is for {snapshot.scenario} {list(snapshot.actions)}, "
            f"the app runs {settings.scenario} {list(actions)}"
        )
    require_idle(settings, settings.app_id, "promote a decision table")
    topic = changelog_topic(settings)
    ensure_topics(settings, [topic], config={"cleanup.policy": "compact"})
    partitions = _partition_count(settings, topic)
    stale = set(live_rows(settings)) - set(snapshot.rows)
    writes = [(key, orjson.dumps(snapshot.rows[key].to_dict())) for key in sorted(snapshot.rows)]
    writes += [(key, None) for key in sorted(stale)]
    errors: list[str] = []
    producer = Producer(settings.producer_config())
    for key, value in writes:
        raw = key.encode()
        producer.produce(
            topic, value=value, key=raw, partition=partition_for(raw, partitions),
            on_delivery=lambda err, _msg: errors.append(str(err)) if err is not None else None,
        )  # fmt: skip
    remaining = producer.flush(60)
    if remaining or errors:
        raise SnapshotError(f"promotion incomplete: {remaining} undelivered, errors: {errors[:3]}")
    return len(snapshot.rows)


def _partition_count(settings: Settings, topic: str) -> int:
    from connectors.admin import end_offsets

    count = len(end_offsets(settings, topic))
    if not count:
        raise SnapshotError(f"topic {topic} has no partitions")
    return count
