"""The replay's small parts: event-time merge, side statistics per partition, reset targets, schedules."""

from __future__ import annotations

import pytest

from streams.replay.outcomes import PartitionedStats
from streams.replay.republish import schedule
from streams.replay.reset import ResetError, parse_target
from streams.replay.sources import KafkaRecord
from streams.replay.timeline import EVENT, FEEDBACK, RawRecord, build_timeline
from streams.scenarios.risk import RiskScenario, label_terminal

TX = (b'{"transaction_id":"t%d","account_id":"a","terminal_id":"T","amount":5.0,"currency":"USD",'
      b'"merchant_category":"5411","country":"US","channel":"pos","event_ts":%f}')  # fmt: skip
LABEL = b'{"transaction_id":"t%d","account_id":"a","terminal_id":"T","is_fraud":false,"label_ts":%f}'


def test_timeline_orders_by_event_time_events_first_on_ties() -> None:
    t = 1_704_067_200.0
    records = [
        RawRecord(FEEDBACK, "a", LABEL % (1, t + 5), None),
        RawRecord(EVENT, "a", TX % (2, t + 5), None),
        RawRecord(EVENT, "a", TX % (1, t + 1), None),
        RawRecord(FEEDBACK, None, LABEL % (3, t + 2), None),  # no key: counted as invalid
    ]
    timeline = build_timeline(RiskScenario(), records)
    assert [(ts - t, kind, seq) for ts, kind, seq, *_ in timeline.items] == [
        (1, EVENT, 2),
        (5, EVENT, 1),
        (5, FEEDBACK, 0),
    ]
    assert timeline.invalid_feedback == 1 and timeline.events == 2 and timeline.feedback == 1


def test_partitioned_stats_sum_slices_like_the_live_table() -> None:
    from streams.scenarios.risk import Label

    stats = PartitionedStats(3)
    for i in range(450):  # 450 labels on one terminal, spread over partitions: each slice halves alone
        label_terminal(stats.slice(i % 3), Label(f"t{i}", "a", "T", i % 10 == 0, 0.0))
    slices = [stats.slice(p).get("T") for p in range(3)]
    assert stats.get("T") == [sum(s[0] for s in slices), sum(s[1] for s in slices)]
    assert all(s[1] <= 200 for s in slices)
    assert stats.get("other") is None
    del stats.slice(0)["T"]
    assert stats.get("T") == [slices[1][0] + slices[2][0], slices[1][1] + slices[2][1]]


@pytest.mark.parametrize(
    ("text", "bound_time", "bound_offset", "per_partition"),
    [
        ("earliest", None, None, None),
        ("42", None, 42, None),
        ("0=10,2=7", None, None, {0: 10, 2: 7}),
        ("2024-01-01T00:00:00Z", 1_704_067_200_000, None, None),
        ("2024-01-01T01:00:00+01:00", 1_704_067_200_000, None, None),
    ],
)
def test_reset_targets(text: str, bound_time, bound_offset, per_partition) -> None:
    target = parse_target(text)
    assert target.per_partition == per_partition
    if per_partition is None:
        assert target.bound is not None
        assert (target.bound.time_ms, target.bound.offset) == (bound_time, bound_offset)


def test_bad_reset_targets() -> None:
    for text in ("yesterday", "0=x", "1=-3"):
        with pytest.raises(ResetError):
            parse_target(text)


def test_republish_schedule_keeps_relative_timing_scaled() -> None:
    recs = [
        KafkaRecord(b"k", b"v", ts, None, p, o) for ts, p, o in ((3000, 1, 0), (1000, 0, 0), (2000, 0, 1))
    ]
    assert [(due, r.timestamp_ms) for due, r in schedule(recs, 2.0)] == [
        (0.0, 1000),
        (0.5, 2000),
        (1.0, 3000),
    ]
    assert [due for due, _ in schedule(recs, 0.0)] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        schedule(recs, -1.0)
