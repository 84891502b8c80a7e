"""The live log: action records in, decisions by id out, the same after crossing a pipe."""

from __future__ import annotations

import pickle

import orjson
import pytest

from streams.replay.engine import LiveDecision
from streams.replay.live_log import LiveLog, parse_actions
from streams.scenarios.risk import ACTIONS


def action(decision_id: object, name: str = "approve", prob: float = 0.9, key: str = "s1") -> bytes:
    return orjson.dumps({"decision_id": decision_id, "action": name, "prob": prob, "state_key": key})


def test_the_first_record_of_a_decision_wins_and_others_are_skipped() -> None:
    values = [
        action("d1", "decline", 0.25, "a"),
        action("d1", "approve", 0.5, "b"),  # a re-send: the first one stands
        b"{not json",
        action("d2", "no-such-action"),
        action(7),  # not an id string
        orjson.dumps({"decision_id": "d3"}),  # no action
        action("d4", "review", 1.0, "a"),
    ]
    log = parse_actions(values, ACTIONS)
    assert dict(log) == {
        "d1": LiveDecision(ACTIONS.index("decline"), 0.25, "a"),
        "d4": LiveDecision(ACTIONS.index("review"), 1.0, "a"),
    }
    assert log.state_keys == ["a"]  # one code per distinct state key
    assert list(log.positions(["d4", "d2", "d1"])) == [1, -1, 0]


@pytest.mark.parametrize("ids", [[], [""], ["", "x"], ["a", "b", "c"]])
def test_a_pickled_log_is_equal(ids: list[str]) -> None:
    log = LiveLog.of({d: LiveDecision(i % len(ACTIONS), i / 10, f"k{i % 2}") for i, d in enumerate(ids)})
    back = pickle.loads(pickle.dumps(log))
    assert dict(back) == dict(log) and len(back) == len(ids)
