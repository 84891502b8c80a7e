"""The live decisions of an actions topic (or file), as columns: a replay compares each event's
replayed decisions with the one live made, looked up by decision id.

A live log holds one action record per event, millions of them: as columns (one id string, one
byte, one float and one state-key code per decision) it is a fraction of the memory of as many
tuples, crosses a pipe as a few buffers, and the columnar replay takes it with one lookup per event.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping
from itertools import repeat
from typing import Any

import orjson

from streams.replay.engine import LiveDecision


class LiveLog(Mapping[str, LiveDecision]):
    """decision id -> what live decided (the first record of an id wins: re-sends are equal)."""

    __slots__ = ("_index", "actions", "ids", "probs", "state_codes", "state_keys")

    def __init__(
        self,
        ids: list[str],
        actions: array,
        probs: array,
        state_codes: array,
        state_keys: list[str],
    ) -> None:
        self.ids, self.actions, self.probs = ids, actions, probs
        self.state_codes, self.state_keys = state_codes, state_keys
        self._index: dict[str, int] = dict(zip(ids, range(len(ids)), strict=True))

    def positions(self, decision_ids: Iterable[str]) -> Iterator[int]:
        """Where each decision is in the columns; -1: live made none with that id."""
        return map(self._index.get, decision_ids, repeat(-1))

    def __getitem__(self, decision_id: str) -> LiveDecision:
        i = self._index[decision_id]
        return LiveDecision(self.actions[i], self.probs[i], self.state_keys[self.state_codes[i]])

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __reduce__(self) -> tuple[Any, ...]:
        # The ids as one buffer: a million small strings pickle and unpickle several times slower.
        joined = "\n".join(self.ids).encode()
        return _unpickle, (joined, self.actions, self.probs, self.state_codes, self.state_keys)

    @classmethod
    def of(cls, decisions: Mapping[str, LiveDecision]) -> LiveLog:
        """The columns of decisions given one by one (tests, hand-made logs)."""
        if isinstance(decisions, LiveLog):
            return decisions
        builder = _Builder()
        for decision_id, d in decisions.items():
            builder.add(decision_id, d.action, d.prob, d.state_key)
        return builder.log()


def _unpickle(joined: bytes, actions: array, probs: array, codes: array, keys: list[str]) -> LiveLog:
    return LiveLog(joined.decode().split("\n") if joined or len(actions) else [], actions, probs, codes, keys)


class _Builder:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.seen: set[str] = set()
        self.actions, self.probs, self.codes = array("b"), array("d"), array("i")
        self.keys: dict[str, int] = {}

    def add(self, decision_id: str, action: int, prob: float, state_key: str) -> None:
        if decision_id in self.seen:
            return
        code = self.keys.setdefault(state_key, len(self.keys))
        self.seen.add(decision_id)
        self.ids.append(decision_id)
        self.actions.append(action)
        self.probs.append(prob)
        self.codes.append(code)

    def log(self) -> LiveLog:
        return LiveLog(self.ids, self.actions, self.probs, self.codes, list(self.keys))


def parse_actions(values: Iterable[bytes], actions: tuple[str, ...]) -> LiveLog:
    """The live log in action records (the shape of `Decision.to_dict`); other records are
    skipped: the report counts only what it can compare."""
    index = {name: i for i, name in enumerate(actions)}
    builder, loads = _Builder(), orjson.loads
    for value in values:
        try:
            d = loads(value)
            decision_id = d["decision_id"]
            if not isinstance(decision_id, str) or "\n" in decision_id:
                continue
            builder.add(decision_id, index[d["action"]], float(d["prob"]), str(d["state_key"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return builder.log()
