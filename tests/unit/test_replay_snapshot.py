"""Decision-table snapshot files: round trip, validation, and replaying a snapshot as a policy."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from streams.core.table import Row
from streams.replay.backtest import run_backtest
from streams.replay.snapshot import FORMAT, SnapshotError, from_settings, load_table, read, write
from streams.replay.timeline import EVENT, RawRecord
from streams.scenarios.risk import ACTIONS
from streams.settings import Settings, load_settings


@pytest.fixture
def settings() -> Settings:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSTREAM_")}
    return load_settings(env=env, epsilon=0.0, policy="qtable")


def rows() -> dict[str, Row]:
    learned = Row(q=[-35.0, -5.0, -2.0], n=[4, 1, 1], mean=[-35.0, -5.0, -2.0], m2=[1.5, 0.0, 0.0], version=6)
    learned.remember("d1")
    return {"a1|v0|z0|t0|n1|c0": learned, "a4|v0|z1|t2|n1|c2": Row(q=[-900.0, -5.0, -1.0], n=[1, 1, 1],
            mean=[-900.0, -5.0, -1.0], m2=[0.0, 0.0, 0.0], version=3)}  # fmt: skip


def event(account: str, amount: float, channel: str) -> RawRecord:
    value = {
        "transaction_id": f"t-{account}", "account_id": account, "terminal_id": "T1", "amount": amount,
        "currency": "USD", "merchant_category": "5411", "country": "US", "channel": channel,
        "event_ts": 1_704_067_200.0,
    }  # fmt: skip
    return RawRecord(EVENT, account, orjson.dumps(value), None)


def test_round_trip_keeps_rows_and_parameters(settings: Settings, tmp_path: Path) -> None:
    path = write(from_settings(settings, rows(), ACTIONS, source="test"), tmp_path / "t.json")
    snap = read(path)
    assert snap.rows == rows()
    assert (snap.scenario, snap.actions, snap.policy) == ("risk", ACTIONS, "qtable")
    assert (snap.epsilon, snap.temperature) == (settings.epsilon, settings.temperature)
    assert (snap.learning_rate, snap.discount) == (settings.learning_rate, settings.discount)
    assert load_table(path) == rows()
    raw = orjson.loads(path.read_bytes())
    assert raw["format"] == FORMAT and raw["version"] == 1 and raw["row_count"] == 2 and raw["created"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="other"), "not a decision-table snapshot"),
        (lambda d: d.update(version=99), "version 99"),
        (lambda d: d.update(row_count=5), "row_count"),
        (lambda d: d["rows"]["a1|v0|z0|t0|n1|c0"].update(q=[1.0]), "action values"),
        (lambda d: d.pop("policy"), "malformed"),
    ],
)
def test_bad_files_are_refused(settings: Settings, tmp_path: Path, change, message: str) -> None:
    path = write(from_settings(settings, rows(), ACTIONS, source="test"), tmp_path / "t.json")
    d = orjson.loads(path.read_bytes())
    change(d)
    path.write_bytes(orjson.dumps(d))
    with pytest.raises(SnapshotError, match=message):
        read(path)
    with pytest.raises(SnapshotError, match="no such"):
        read(tmp_path / "missing.json")


def test_a_snapshot_replays_as_a_policy(settings: Settings, tmp_path: Path) -> None:
    path = write(from_settings(settings, rows(), ACTIONS, source="test"), tmp_path / "t.json")
    records = [event("a2", 50.0, "pos")]  # state a1|v0|z0|t0|n1|c0, where the snapshot says decline
    bt = run_backtest(settings, records, [f"snapshot:{path}", "qtable"], learning=False)
    assert bt.report[f"snapshot:{path}"]["decisions"] == {"approve": 0, "review": 0, "decline": 1}
    assert bt.report["qtable"]["decisions"] == {"approve": 1, "review": 0, "decline": 0}  # empty table
    with pytest.raises(ValueError, match="no such snapshot"):
        run_backtest(settings, records, [f"snapshot:{tmp_path / 'nope.json'}"])
