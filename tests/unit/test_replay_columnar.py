"""The columnar replay engine gives exactly what the per-event core gives, and falls back when it can't."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import orjson
import pytest

from connectors.generate import generate_to_jsonl
from streams.core.columnar import Groups, count_at_or_before, stable_argsort, uniforms
from streams.core.policies import EpsilonGreedy
from streams.core.scenario import Decision, Draw, Observation, draw_digest
from streams.replay.backtest import Backtest, JsonlFile, backtest, run_backtest
from streams.replay.draws import DrawDigests
from streams.replay.engine import EngineConfig, LiveDecision, PolicySpec, ReplayEngine
from streams.replay.fastpath import NotColumnar, run_columnar
from streams.replay.outcomes import PartitionedStats
from streams.replay.report import to_json
from streams.replay.risk_input import columns_from_records, read_columns
from streams.replay.sources import SourceError, read_jsonl
from streams.replay.template import _numbers
from streams.replay.timeline import EVENT, FEEDBACK, RawRecord, build_timeline
from streams.scenarios.risk import (
    ACTIONS,
    DECISION_ID_PREFIX,
    MAX_TERMINALS,
    STATE_KEYS,
    RiskScenario,
    Transaction,
    baseline_code,
    decision_id_for,
    draw_digests_for,
    state_index_columns,
    state_key,
)
from streams.settings import Settings, load_settings

T0 = 1_704_067_200.0


@pytest.fixture(scope="module")
def settings() -> Settings:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSTREAM_")}
    return load_settings(env=env, partitions=4)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("columnar") / "risk-20k.jsonl"
    generate_to_jsonl(path, 20_000, seed=11, customers=1_500, terminals=300)
    return path


@pytest.fixture(scope="module")
def records(generated: Path) -> list[RawRecord]:
    return list(read_jsonl(generated))


def assert_same(fast: Backtest, scalar: Backtest) -> None:
    """Every per-event decision, probability, reward and state key, the tables, and the report."""
    assert fast.engine == "columnar" and scalar.engine == "scalar"
    assert fast.result.state_keys == scalar.result.state_keys
    for mine, theirs in zip(fast.result.runs, scalar.result.runs, strict=True):
        assert mine.label == theirs.label
        assert mine.actions == theirs.actions
        assert mine.probs == theirs.probs
        assert mine.rewards == theirs.rewards
        assert mine.counts == theirs.counts
        if mine.label != "rules":  # the rules' rows are never read: the columnar engine keeps none
            assert {k: r.to_dict() for k, r in mine.table.items()} == {
                k: r.to_dict() for k, r in theirs.table.items()
            }
    assert fast.result.event_ts == scalar.result.event_ts
    assert fast.result.positive == scalar.result.positive
    assert to_json(fast.report) == to_json(scalar.report)


@pytest.mark.parametrize(("learning", "seed"), [(True, None), (True, 5), (False, None)])
def test_columnar_engine_equals_the_scalar_core(
    settings: Settings, records: list[RawRecord], learning: bool, seed: int | None
) -> None:
    policies = ["rules", "qtable"]
    kw = {"learning": learning, "seed": seed, "keep_state_keys": True}
    fast = run_backtest(settings, records, policies, engine="columnar", **kw)
    scalar = run_backtest(settings, records, policies, engine="scalar", **kw)
    assert fast.report["input"]["events"] == 20_000
    assert fast.report["input"]["feedback"]["joined"] > 19_000
    assert fast.report["qtable"]["decisions"] != fast.report["rules"]["decisions"]
    assert_same(fast, scalar)


def test_the_jsonl_reader_gives_the_same_replay(settings: Settings, generated: Path) -> None:
    data = generated.read_bytes()
    fast = backtest(settings, JsonlFile(generated, data), ["rules", "qtable"])
    scalar = run_backtest(settings, list(read_jsonl(generated)), ["rules", "qtable"], engine="scalar")
    assert fast.engine == "columnar" and fast.records == scalar.records
    assert to_json(fast.report) == to_json(scalar.report)


def test_a_starting_table_is_learned_on_as_apply_does(settings: Settings, records: list[RawRecord]) -> None:
    """A snapshot's rows remember decision ids: replaying the same input again must skip exactly the
    transitions `learning.apply` skips (the row saw that decision already), and learn the rest."""
    first = run_backtest(settings, records[: len(records) // 20], ["qtable"], engine="scalar")
    table = first.result.runs[0].table
    assert 0 < len(table) < len({k for k in run_backtest(settings, records, ["qtable"]).result.runs[0].table})
    scenario = RiskScenario(PartitionedStats(settings.partitions))
    spec = PolicySpec("again", EpsilonGreedy(len(ACTIONS), settings.epsilon), table)
    config = EngineConfig.from_settings(settings)
    fast = run_columnar(scenario, [spec], config, columns_from_records(scenario, records))
    stats = PartitionedStats(settings.partitions)
    engine = ReplayEngine(RiskScenario(stats), stats, [spec], config)
    scalar = engine.run(build_timeline(engine.scenario, records))
    assert fast.runs[0].actions == scalar.runs[0].actions
    assert {k: r.to_dict() for k, r in fast.runs[0].table.items()} == {
        k: r.to_dict() for k, r in scalar.runs[0].table.items()
    }


def tx(tid: str, account: str, ts: float, terminal: str = "T1", amount: float = 50.0) -> RawRecord:
    value = {"transaction_id": tid, "account_id": account, "terminal_id": terminal, "amount": amount,
             "currency": "USD", "merchant_category": "5411", "country": "US", "channel": "pos",
             "event_ts": ts}  # fmt: skip
    return RawRecord(EVENT, account, orjson.dumps(value), ts)


def label(tid: str, account: str, ts: float, fraud: bool = False, key: str | None = None) -> RawRecord:
    value = {"transaction_id": tid, "account_id": account, "terminal_id": "T1", "is_fraud": fraud,
             "label_ts": ts}  # fmt: skip
    return RawRecord(FEEDBACK, account if key is None else key, orjson.dumps(value), ts)


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ([label("a", "A", T0), tx("a", "A", T0 + 1)], "labels before their transaction"),
        ([tx("a", "A", T0), tx("a", "A", T0 + 1)], "repeated transaction ids"),
        ([tx("a", "A", T0), label("a", "A", T0 + 1), label("a", "A", T0 + 2)], "repeated labels"),
        ([tx("a", "A", T0), label("b", "A", T0 + 1)], "labels without their transaction"),
        ([tx("a", "A", T0), label("a", "A", T0 + 1, key="B")], "keyed by another entity"),
        ([tx("a", "A", T0), tx("b", "A", T0 + 2 * 86_400.0)], "decisions would expire"),
    ],
)
def test_what_only_the_scalar_engine_covers(
    settings: Settings, records: list[RawRecord], reason: str
) -> None:
    with pytest.raises(NotColumnar, match=reason):
        run_backtest(settings, records, ["rules", "qtable"], engine="columnar")
    auto = run_backtest(settings, records, ["rules", "qtable"])
    assert auto.engine.startswith("scalar") and reason in auto.engine
    assert to_json(auto.report) == to_json(
        run_backtest(settings, records, ["rules", "qtable"], engine="scalar").report
    )


def test_other_policies_use_the_scalar_engine(settings: Settings) -> None:
    records = [tx("a", "A", T0), label("a", "A", T0 + 1)]
    assert run_backtest(settings, records, ["softmax"]).engine.startswith("scalar")
    assert run_backtest(settings, records, ["rules"], live={}).engine == "columnar"
    assert run_backtest(settings, records, ["rules", "qtable"]).engine == "columnar"


@pytest.mark.parametrize("records", [[], [tx("a", "A", T0)], [tx("a", "A", T0), tx("b", "B", T0)]])
def test_small_inputs(settings: Settings, records: list[RawRecord]) -> None:
    fast = run_backtest(settings, records, ["rules", "qtable"], engine="columnar", keep_state_keys=True)
    scalar = run_backtest(settings, records, ["rules", "qtable"], engine="scalar", keep_state_keys=True)
    assert_same(fast, scalar)


def test_a_terminal_leaves_the_recent_list_after_16_others(settings: Settings) -> None:
    """The new-terminal feature over long gaps (the columnar path counts distinct terminals)."""
    rng = random.Random(4)
    terminals = [f"T{rng.randrange(24)}" for _ in range(400)]
    records = [tx(f"t{i}", "A", T0 + 30 * i, terminal) for i, terminal in enumerate(terminals)]
    fast = run_backtest(settings, records, ["rules"], engine="columnar", keep_state_keys=True)
    scalar = run_backtest(settings, records, ["rules"], engine="scalar", keep_state_keys=True)
    assert_same(fast, scalar)
    keys = fast.result.state_keys or []
    assert {k.split("|")[4] for k in keys} == {"n0", "n1"}
    assert MAX_TERMINALS == 16


# --- the JSONL reader -----------------------------------------------------------------------------

GOOD_TX = (
    b'{"kind":"event","key":"A1","sim_ts":1704067200.5,"value":{"transaction_id":"t%d",'
    b'"account_id":"A1","terminal_id":"T1","amount":12.5,"currency":"USD","merchant_category":"5411",'
    b'"country":"US","channel":"pos","event_ts":1704067200.5}}'
)


def odd_lines() -> list[bytes]:
    """Lines each path must treat alike: valid ones the template does not take, and invalid ones."""
    good = GOOD_TX % 0
    return [
        good.replace(b'"amount":12.5', b'"amount":-3'),  # negative
        good.replace(b'"amount":12.5', b'"amount":1e3'),  # exponent: valid, not the template's
        good.replace(b'"amount":12.5', b'"amount":012.5'),  # not JSON
        good.replace(b'"amount":12.5', b'"amount":"12.5"'),  # a string
        good.replace(b'"amount":12.5', b'"amount":2000000'),  # above the limit
        good.replace(b'"amount":12.5', b'"amount":7'),  # an integer: valid
        good.replace(b'"currency":"USD"', b'"currency":"usd"'),
        good.replace(b'"channel":"pos"', b'"channel":"moon"'),
        good.replace(b'"account_id":"A1"', b'"account_id":"\\u0041\\u0031"'),  # escapes: valid
        good.replace(b'"account_id":"A1"', b'"account_id":"   "'),
        good.replace(b'"account_id":"A1"', b'"account_id":""'),
        good.replace(b'"account_id":"A1"', '"account_id":"Ä1"'.encode()),  # non-ASCII: valid
        good.replace(b'"account_id":"A1"', b'"account_id":"' + b"x" * 70 + b'"'),
        good.replace(b'"terminal_id":"T1",', b""),  # missing field
        good.replace(b'"country":"US",', b'"country":"US","extra":1,'),
        good.replace(b'"event_ts":1704067200.5}', b'"event_ts":99.5}'),  # before 2000
        good.replace(b'"event_ts":1704067200.5}', b'"event_ts":1704067200.50000000000000000001}'),
        good.replace(b'"sim_ts":1704067200.5', b'"sim_ts":1704067200'),
        good.replace(b'"sim_ts":1704067200.5', b'"sim_ts":01'),  # float() takes it: the fast line path does
        good.replace(b'","sim_ts"', b'", "sim_ts"'),  # whitespace: the general path
        good.replace(b"{", b"{ ", 1),
        good + b"\r",
        good.replace(b'"value":{', b'"value":"{').replace(b"}}", b'}"}'),  # value as a string
        good.replace(b'"transaction_id":"t0"', b'"transaction_id":" t0"'),
        b'{"kind":"feedback","key":"A1","sim_ts":1704067300.0,"value":{"transaction_id":"t1","account_id":"A1",'
        b'"terminal_id":"T1","is_fraud":true,"label_ts":1704067300.0}}',
        b'{"kind":"feedback","key":"","sim_ts":1704067300.0,"value":{"transaction_id":"t2","account_id":"A1",'
        b'"terminal_id":"T1","is_fraud":false,"label_ts":1704067300.0}}',  # no key
        b'{"kind":"feedback","key":"A1","sim_ts":1704067300.0,"value":{"transaction_id":"t3","account_id":"A1",'
        b'"terminal_id":"T1","is_fraud":"no","label_ts":1704067300.0}}',
        b'{"kind":"feedback","key":"A1","sim_ts":1704067300.0,"value":{"transaction_id":"t4","account_id":"A1",'
        b'"terminal_id":"T1","is_fraud":falsey,"label_ts":1704067300.0}}',
        b"",
        b"   ",
    ]


def columns_as_lists(cols) -> dict:
    """Comparable columns; arrival numbers as ranks (a reader may count blank lines, or not)."""
    ent, term = cols.entities.names, cols.terminals.names
    seqs = np.concatenate((cols.ev_seq, cols.lb_seq))
    rank = np.empty(len(seqs), dtype=np.int64)
    rank[np.argsort(seqs)] = np.arange(len(seqs))
    ev_rank, lb_rank = rank[: len(cols.ev_seq)], rank[len(cols.ev_seq) :]
    return {
        "ev": sorted(
            zip(
                ev_rank.tolist(),
                cols.ev_ts.tolist(),
                cols.ev_amount.tolist(),
                [ent[i] for i in cols.ev_account],
                [term[i] for i in cols.ev_terminal],
                cols.ev_ecom.tolist(),
                cols.ev_tid,
                strict=True,
            )
        ),
        "lb": sorted(
            zip(
                lb_rank.tolist(),
                cols.lb_ts.tolist(),
                [ent[i] for i in cols.lb_key],
                [term[i] for i in cols.lb_terminal],
                cols.lb_fraud.tolist(),
                cols.lb_tid,
                strict=True,
            )
        ),
        "invalid": dict(cols.invalid),
        "records": cols.records,
    }


def test_the_template_reader_agrees_with_the_per_record_parser(tmp_path: Path, generated: Path) -> None:
    lines = [GOOD_TX % i for i in range(1, 4)] + odd_lines() + generated.read_bytes().splitlines()[:3000]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines))  # no newline after the last line
    scenario = RiskScenario()
    fast = read_columns(scenario, path)
    slow = columns_from_records(scenario, read_jsonl(path))
    assert columns_as_lists(fast) == columns_as_lists(slow)
    assert sum(fast.invalid.values()) >= 15
    assert len(fast.ev_seq) > 3000 // 2


def test_a_line_that_is_no_record_fails_both_readers(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_bytes(GOOD_TX % 1 + b"\n" + b'{"kind":"event","key":"A1"\n')
    with pytest.raises(SourceError, match=":2:"):
        read_columns(RiskScenario(), path)
    with pytest.raises(SourceError, match=":2:"):
        list(read_jsonl(path))


def test_numbers_decode_as_float_does() -> None:
    rng = random.Random(2)
    texts = [repr(T0 + rng.random() * 86_400 * 365) for _ in range(3000)]
    texts += [f"{rng.randint(1, 999_999)}.{rng.randint(0, 99):02d}" for _ in range(3000)]
    texts += [str(rng.randint(0, 10**18)) for _ in range(500)] + ["0", "0.5", "7", "123456789012345678901"]
    width = 32
    buf = np.frombuffer(b"".join(t.encode().ljust(width, b"\0") for t in texts) + b"\0" * 64, dtype=np.uint8)
    start = np.arange(len(texts)) * width
    ok, values = _numbers(buf, start, start + np.array([len(t) for t in texts]), True)
    assert ok.all()
    assert values.tolist() == [float(t) for t in texts]
    bad = [b"01", b"1.", b".5", b"1.2.3", b"-1", b"1e5", b""]
    buf = np.frombuffer(b"".join(t.ljust(width, b"\0") for t in bad) + b"\0" * 64, dtype=np.uint8)
    start = np.arange(len(bad)) * width
    ok, _ = _numbers(buf, start, start + np.array([len(t) for t in bad]), False)
    assert not ok.any()


# --- the core's columnar twins ----------------------------------------------------------------------


def test_draws_in_bulk_are_draw_uniforms() -> None:
    tids = [f"t{i}".encode() for i in range(300)]
    u1, u2 = uniforms(draw_digests_for(tids, b"\x1f7"), len(tids), 2)
    for tid, a, b in zip(tids, u1.tolist(), u2.tolist(), strict=True):
        draw = Draw(decision_id_for(tid.decode()) + "\x1f7")
        assert (draw.uniform(), draw.uniform()) == (a, b)
    assert len(draw_digest("x")) == 64


def test_draws_hashed_in_a_child_process_are_the_same_bytes() -> None:
    tids = [f"t{i}".encode() for i in range(3000)] + ["é".encode(), b""]
    expected = draw_digests_for(tids, b"\x1f7")
    in_child = DrawDigests(DECISION_ID_PREFIX, tids, b"\x1f7", parallel=True)
    assert in_child.result() == expected
    assert in_child.from_child
    assert in_child.result() == expected  # asked again (a second learning policy): kept
    assert DrawDigests(DECISION_ID_PREFIX, tids, b"\x1f7", parallel=False).result() == expected


def test_epsilon_greedy_pick_in_columns_is_pick() -> None:
    policy = EpsilonGreedy(3, 0.3)
    rng = np.random.default_rng(0)
    greedy, u, v = rng.integers(0, 3, 2000), rng.random(2000), rng.random(2000)
    u[:5] = [0.3, 0.0, 0.29999999, 1 - 1e-16, 0.3000001]
    actions, probs = policy.pick_columns(greedy, u, v)
    expected = [policy.pick(g, a, b) for g, a, b in zip(greedy.tolist(), u.tolist(), v.tolist(), strict=True)]
    assert list(zip(actions.tolist(), probs.tolist(), strict=True)) == expected


def test_rule_and_state_key_on_columns_equal_the_scalar_ones() -> None:
    rng = np.random.default_rng(1)
    n = 5000
    amount = np.round(np.exp(rng.normal(4, 1.5, n)), 2)
    amount[:8] = [25.0, 100.0, 300.0, 1000.0, 500.0, 99.99, 1000.01, 24.99]
    count = rng.integers(0, 6, n)
    z = rng.normal(1, 2, n)
    risk = rng.choice([0.01, 0.03, 0.1, 0.2, 0.0999], n)
    new, cnp, foreign = rng.random(n) < 0.3, rng.random(n) < 0.5, rng.random(n) < 0.2
    codes = baseline_code(amount, risk, count, z, new, cnp, foreign)
    keys = state_index_columns(amount, count, z, risk, new, cnp, foreign)
    scenario = RiskScenario()
    for i in range(n):
        args = (
            float(amount[i]),
            int(count[i]),
            float(z[i]),
            float(risk[i]),
            bool(new[i]),
            bool(cnp[i]),
            bool(foreign[i]),
        )
        assert STATE_KEYS[keys[i]] == state_key(*args)
        names = ("amount", "count_1m", "amount_z", "terminal_risk", "new_terminal", "cnp", "foreign")
        features = {name: float(x) for name, x in zip(names, args, strict=True)}
        assert ACTIONS[codes[i]] == scenario.baseline(Observation("", features))


def test_rewards_in_columns_equal_reward() -> None:
    scenario = RiskScenario()
    actions = np.array([0, 1, 2, 0, 1, 2])
    fraud = np.array([True, True, True, False, False, False])
    amount = np.array([10.0, 20.5, 30.25, 0.0, 1.0, 2.0])
    rewards = scenario.reward_columns(actions, fraud, amount).tolist()
    for a, f, x, r in zip(actions.tolist(), fraud.tolist(), amount.tolist(), rewards, strict=True):
        decision = Decision("d", "e", ACTIONS[a], 1.0, "p", 0, "s", T0, T0, "t", {"amount": x})
        label_ = scenario.no_feedback_outcome(decision)
        label_.is_fraud = f
        assert str(r) == str(scenario.reward(decision, label_))  # -0.0 included


def test_groups_and_counts() -> None:
    keys = np.array([3, 1, 3, 2, 1, 3])
    groups = Groups.of(keys)
    assert groups.order.tolist() == stable_argsort(keys).tolist() == np.argsort(keys, kind="stable").tolist()
    assert groups.rank.tolist() == [0, 1, 0, 0, 1, 2]
    steps = [(k, sorted(at.tolist())) for k, at in groups.steps()]
    assert steps == [(0, [0, 2, 3]), (1, [1, 4]), (2, [5])]
    values = np.array([5, 7, 1, 1, 2, 9])  # per sorted position, non-decreasing inside each group
    counts = count_at_or_before(groups, values, np.array([6, 6, 1, 0, 1, 8]))
    assert counts.tolist() == [1, 1, 1, 0, 1, 2]


def test_transaction_dataclass_is_unchanged() -> None:
    assert [f for f in Transaction.__dataclass_fields__] == [
        "transaction_id", "account_id", "terminal_id", "amount", "currency", "merchant_category", "country",
        "channel", "event_ts",
    ]  # fmt: skip


def test_live_decisions_are_compared_as_the_scalar_engine_does(
    settings: Settings, records: list[RawRecord]
) -> None:
    """Live decisions looked up by decision id: some events without one, some that disagree."""
    rng = random.Random(3)
    tids = [orjson.loads(r.value)["transaction_id"] for r in records if r.kind == EVENT]
    live = {
        decision_id_for(tid): LiveDecision(
            rng.randrange(len(ACTIONS)), 0.2 + 0.8 * rng.random(), f"s{rng.randrange(5)}"
        )
        for tid in tids
        if rng.random() < 0.85
    }
    fast = run_backtest(settings, records, ["rules", "qtable"], engine="columnar", live=live)
    scalar = run_backtest(settings, records, ["rules", "qtable"], engine="scalar", live=live)
    assert fast.result.live is not None and scalar.result.live is not None
    assert fast.result.live.actions == scalar.result.live.actions
    assert fast.result.live.rewards == scalar.result.live.rewards
    assert fast.result.live_keys == scalar.result.live_keys
    assert 0 < fast.report["rules"]["agreement"]["matched"] < fast.report["rules"]["agreement"]["compared"]
    assert to_json(fast.report) == to_json(scalar.report)
