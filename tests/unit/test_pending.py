"""Pending decisions: late, early, duplicate and never-arriving outcomes."""

from __future__ import annotations

import orjson

from streams.core.pending import JOINED_ID_CHARS, MAX_EARLY, RECENT_JOINED, JoinStatus, PendingDecisions


def decision(decision_id: str, ts: float) -> dict:
    return {"decision_id": decision_id, "event_ts": ts, "action": "approve", "features": {"amount": 1.0}}


def test_join_then_duplicate() -> None:
    pending = PendingDecisions()
    pending.add(decision("d1", 10.0))
    status, stored = pending.join("d1", "{}", now=0.0)
    assert status is JoinStatus.JOINED and stored is not None and stored["decision_id"] == "d1"
    assert pending.join("d1", "{}", now=0.0) == (JoinStatus.DUPLICATE, None)


def test_an_early_outcome_waits_for_its_decision() -> None:
    pending = PendingDecisions()
    assert pending.join("d2", '{"x": 1}', now=5.0) == (JoinStatus.EARLY, None)
    assert pending.join("d2", '{"x": 1}', now=5.0) == (JoinStatus.DUPLICATE, None)
    assert pending.take_early("d2") == '{"x": 1}'
    assert pending.take_early("d2") is None
    assert pending.join("d2", "{}", now=6.0) == (JoinStatus.DUPLICATE, None)


def test_early_outcomes_are_evicted_by_age_and_count() -> None:
    pending = PendingDecisions()
    pending.join("old", "{}", now=0.0)
    for i in range(MAX_EARLY + 5):
        pending.join(f"e{i}", "{}", now=100.0)
    dropped = pending.evict_early(now=100.0, ttl_s=50.0)
    assert dropped == 1 + 5
    assert len(pending.early) == MAX_EARLY and "old" not in pending.early and "e0" not in pending.early


def test_expiry_is_by_event_time_and_only_once() -> None:
    pending = PendingDecisions()
    pending.add(decision("a", 100.0))
    pending.add(decision("b", 200.0))
    assert pending.expire(watermark=250.0, ttl_s=160.0) == []
    expired = pending.expire(watermark=250.1, ttl_s=150.0)
    assert [d["decision_id"] for d in expired] == ["a"]
    assert pending.expire(watermark=250.1, ttl_s=150.0) == []
    assert pending.join("a", "{}", now=0.0)[0] is JoinStatus.DUPLICATE
    assert [d["decision_id"] for d in pending.expire(watermark=1000.0, ttl_s=1.0)] == ["b"]


def test_bytes_round_trip_keeps_everything() -> None:
    pending = PendingDecisions()
    pending.add(decision("a", 1.0))
    pending.add(decision("b", 2.0))
    pending.join("a", "{}", now=0.0)
    pending.join("z", '{"late": true}', now=3.0)
    again = PendingDecisions.from_bytes(pending.to_bytes())
    assert again.open == pending.open and again.joined == pending.joined and again.early == pending.early
    assert PendingDecisions.from_bytes(again.to_bytes()).to_bytes() == again.to_bytes()
    assert [d["decision_id"] for d in again.expire(watermark=10.0, ttl_s=5.0)] == ["b"]
    assert not PendingDecisions.from_bytes(None)


def test_judged_decisions_stay_until_their_events_are_handled() -> None:
    """After a crash the feedback backlog can judge many decisions of an account before its events
    are redelivered: each must still be found then, joined or expired, until the position passes."""
    pending = PendingDecisions()
    for i in range(40):
        pending.add({**decision(f"d{i}", float(i)), "offset": 100 + i})
    for i in range(39):
        assert pending.join(f"d{i}", "{}", now=0.0)[0] is JoinStatus.JOINED
    assert [d["decision_id"] for d in pending.expire(watermark=1000.0, ttl_s=1.0)] == ["d39"]
    assert all(pending.stored(f"d{i}") is not None for i in range(40))
    pending.prune_done(120)  # events before offset 120 have their actions in Kafka
    assert pending.stored("d19") is None and pending.stored("d20") is not None
    assert PendingDecisions.from_bytes(pending.to_bytes()).stored("d39") is not None


def test_joined_decisions_are_remembered_by_a_short_prefix_and_old_values_still_load() -> None:
    """The joined list is written with every change of the entity: it holds id prefixes, and values
    written with full ids read as prefixes, so a duplicate is still told apart after an upgrade."""
    full = "b0cc15ebc2d57cd09922ecda"
    pending = PendingDecisions()
    pending.add(decision(full, 1.0))
    assert pending.join(full, "{}", now=0.0)[0] is JoinStatus.JOINED
    assert orjson.loads(pending.to_bytes())["j"] == full[:JOINED_ID_CHARS]
    assert pending.join(full, "{}", now=1.0)[0] is JoinStatus.DUPLICATE
    assert pending.was_joined(full) and not pending.was_joined("c" + full[1:])
    old = orjson.dumps({"o": {}, "j": [full], "e": {}, "d": {}})
    assert PendingDecisions.from_bytes(old).join(full, "{}", now=2.0)[0] is JoinStatus.DUPLICATE
    across = full[6:12] + "0" * 18  # the end of one prefix and the start of the next
    pending._remember("0" * 24)
    assert not pending.was_joined(across) and pending.was_joined("0" * 24)
    for i in range(RECENT_JOINED + 5):
        pending._remember(f"{i:012x}" + "f" * 12)
    assert len(pending.joined) == RECENT_JOINED * JOINED_ID_CHARS and not pending.was_joined(full)
    assert pending.was_joined(f"{RECENT_JOINED + 4:012x}") and not pending.was_joined(f"{4:012x}")
