"""The replay engine: deterministic, labels arrive when they did, learning on/off, live comparison."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from connectors.generate import generate_to_jsonl
from streams.replay.backtest import run_backtest
from streams.replay.live_log import parse_actions
from streams.replay.report import to_json
from streams.replay.sources import read_jsonl
from streams.replay.timeline import EVENT, FEEDBACK, RawRecord
from streams.scenarios.risk import ACTIONS, decision_id_for
from streams.settings import Settings, load_settings

T0 = 1_704_067_200.0


@pytest.fixture
def settings() -> Settings:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSTREAM_")}
    return load_settings(env=env, epsilon=0.0, partitions=4)


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> list[RawRecord]:
    path = tmp_path_factory.mktemp("replay") / "risk.jsonl"
    generate_to_jsonl(path, 4_000, seed=3, customers=400, terminals=150)
    return list(read_jsonl(path))


def tx(i: int, ts: float, amount: float = 50.0) -> RawRecord:
    """A first transaction of a fresh account at a fresh terminal: all share one state key."""
    value = {
        "transaction_id": f"tx{i}", "account_id": f"acct{i}", "terminal_id": f"T{i}", "amount": amount,
        "currency": "USD", "merchant_category": "5411", "country": "US", "channel": "pos", "event_ts": ts,
    }  # fmt: skip
    return RawRecord(EVENT, f"acct{i}", orjson.dumps(value), ts)


def label(i: int, ts: float, fraud: bool) -> RawRecord:
    value = {"transaction_id": f"tx{i}", "account_id": f"acct{i}", "terminal_id": f"T{i}", "is_fraud": fraud,
             "label_ts": ts}  # fmt: skip
    return RawRecord(FEEDBACK, f"acct{i}", orjson.dumps(value), ts)


def actions_of(backtest, label_: str) -> list[str]:
    run = next(r for r in backtest.result.runs if r.label == label_)
    return [ACTIONS[a] for a in run.actions]


def test_two_runs_give_byte_identical_reports(settings: Settings, stream: list[RawRecord]) -> None:
    first = to_json(run_backtest(settings, stream, ["rules", "qtable", "softmax"]).report)
    again = to_json(run_backtest(settings, list(stream), ["rules", "qtable", "softmax"]).report)
    assert first == again
    salted = to_json(run_backtest(settings, stream, ["rules", "qtable", "softmax"], seed=7).report)
    assert salted == to_json(run_backtest(settings, stream, ["rules", "qtable", "softmax"], seed=7).report)
    report = orjson.loads(first)
    assert report["qtable"]["events"] == report["input"]["events"] == 4_000
    assert {"events", "reward", "cost_per_1k", "series"} <= set(report["rules"])


def test_the_input_order_does_not_matter_only_event_time(settings: Settings, stream: list[RawRecord]) -> None:
    events = [r for r in stream if r.kind == EVENT]
    labels = [r for r in stream if r.kind == FEEDBACK]
    shuffled = labels[::-1] + events  # as if the two topics were read one after the other
    a = run_backtest(settings, stream, ["qtable"]).report
    b = run_backtest(settings, shuffled, ["qtable"]).report
    assert to_json(a) == to_json(b)


def test_a_label_only_affects_decisions_after_its_time(settings: Settings) -> None:
    records = [tx(i, T0 + 10 * i) for i in range(10)]
    # tx0 was fraud; its label arrives exactly when tx5 happens: events go first on a tie
    records.append(label(0, T0 + 50, fraud=True))
    learned = run_backtest(settings, records, ["qtable"], learning=True)
    assert actions_of(learned, "qtable") == ["approve"] * 6 + ["review"] * 4
    frozen = run_backtest(settings, records, ["qtable"], learning=False)
    assert actions_of(frozen, "qtable") == ["approve"] * 10
    assert learned.result.runs[0].table and not frozen.result.runs[0].table
    assert frozen.report["qtable"]["reward"] == -50.0  # the approved fraud
    assert learned.report["qtable"]["reward"] == -50.0 - 4 * settings.review_fee  # + four reviews


def test_learning_changes_a_learner_and_not_the_rules(settings: Settings, stream: list[RawRecord]) -> None:
    on = run_backtest(settings, stream, ["rules", "qtable"], learning=True).report
    off = run_backtest(settings, stream, ["rules", "qtable"], learning=False).report
    assert on["rules"] == off["rules"]
    assert on["qtable"]["decisions"] != off["qtable"]["decisions"]
    assert off["qtable"]["decisions"]["approve"] == 4_000  # epsilon 0, nothing learned: always greedy


def test_an_early_label_waits_for_its_decision(settings: Settings) -> None:
    records = [label(1, T0 + 1, fraud=True), tx(1, T0 + 5, amount=80.0)]
    bt = run_backtest(settings, records, ["rules"])
    feedback = bt.report["input"]["feedback"]
    assert feedback == {"early": 1, "joined": 1}
    assert bt.report["rules"]["reward"] == -80.0  # approved fraud: the amount is lost
    assert bt.report["input"]["positives"] == 1


def test_unlabelled_decisions_expire_as_legit(settings: Settings) -> None:
    settings = settings.with_overrides(pending_ttl_s=100.0)
    same_account = orjson.loads(tx(0, T0).value) | {"transaction_id": "tx-later", "event_ts": T0 + 500}
    records = [tx(0, T0), RawRecord(EVENT, "acct0", orjson.dumps(same_account), T0 + 500)]
    bt = run_backtest(settings, records, ["rules"])
    assert bt.report["input"]["expired"] == 1
    assert bt.report["input"]["pending_at_end"] == 1
    assert bt.report["rules"]["reward"] == 0.0  # approvals of legit transactions cost nothing


def test_malformed_records_are_counted_not_fatal(settings: Settings) -> None:
    records = [tx(0, T0), RawRecord(EVENT, "x", b"{not json", None), RawRecord(FEEDBACK, None, b"[]", None)]
    bt = run_backtest(settings, records, ["rules"])
    assert bt.report["rules"]["events"] == 1
    assert sum(bt.report["input"]["invalid"].values()) == 2


def test_replaying_the_live_policy_agrees_with_its_log(settings: Settings, stream: list[RawRecord]) -> None:
    first = run_backtest(settings, stream, ["rules"]).result
    ids = [orjson.loads(r.value)["transaction_id"] for r in stream if r.kind == EVENT]
    logged = []
    for tid, a in zip(ids, first.runs[0].actions, strict=True):
        logged.append(orjson.dumps({"decision_id": decision_id_for(tid), "action": ACTIONS[a], "prob": 1.0,
                                    "state_key": "s"}))  # fmt: skip
    live = parse_actions(logged, ACTIONS)
    report = run_backtest(settings, stream, ["rules", "qtable"], live=live).report
    assert report["rules"]["agreement"] == {"compared": 4_000, "matched": 4_000, "rate": 1.0}
    assert report["live"]["reward"] == report["rules"]["reward"]
    ope = report["ope"]
    assert ope["logged"] == 4_000
    # a deterministic logging policy: IPS of itself is exact, of another policy only on agreement
    assert ope["rules"]["ips"]["value"] == pytest.approx(ope["live_value"])
    assert ope["rules"]["replayed"] == pytest.approx(ope["live_value"])


def test_unknown_policy_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown policy 'greedy'"):
        run_backtest(settings, [tx(0, T0)], ["greedy"])
    with pytest.raises(ValueError, match="twice"):
        run_backtest(settings, [tx(0, T0)], ["rules", "rules"])


def test_jsonl_fast_path_matches_the_general_decoder(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    generate_to_jsonl(path, 300, seed=1, customers=50, terminals=20)
    fast = list(read_jsonl(path))
    general = tmp_path / "g.jsonl"  # same records, keys reordered: only the general decoder reads these
    with general.open("wb") as out:
        for line in path.read_bytes().splitlines():
            d = orjson.loads(line)
            out.write(orjson.dumps({"value": d["value"], "sim_ts": d["sim_ts"], "key": d["key"],
                                    "kind": d["kind"]}) + b"\n")  # fmt: skip
    slow = list(read_jsonl(general))
    assert [(r.kind, r.key, orjson.loads(r.value), r.ts) for r in fast] == [
        (r.kind, r.key, orjson.loads(r.value), r.ts) for r in slow
    ]
