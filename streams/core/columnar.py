"""Helpers for computing per-entity recurrences over columns of events (the replay's fast path).

A scenario's per-entity state (running counts, Welford statistics, ...) is a recurrence: event k
of an entity updates what event k-1 left. Over a whole replay the entities are independent, so the
recurrence can run once per *rank* instead of once per event: step k updates the k-th event of
every entity at once with numpy. Each lane performs exactly the IEEE operations the scalar code
performs on its state, in the same order, so the results are bit-for-bit those of the scalar core.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from streams.core.scenario import DRAW_CHUNK, DRAW_DIGEST_SIZE, DRAW_SCALE


@dataclass(slots=True)
class Groups:
    """Rows grouped by an integer key; inside a group rows keep their order (event time).

    `order[i]` is the row at sorted position i; sorted positions of one group are contiguous, from
    `starts[g]` for `sizes[g]` rows; `rank[i]` is position i's index inside its group.
    """

    order: np.ndarray
    keys: np.ndarray  # key of each sorted position
    starts: np.ndarray
    sizes: np.ndarray
    rank: np.ndarray
    group: np.ndarray  # group number of each sorted position
    _by_size: np.ndarray  # groups, largest first: the groups still active at step k are a prefix
    _active: np.ndarray  # _active[k]: number of groups with more than k rows

    @classmethod
    def of(cls, keys: np.ndarray) -> Groups:
        order = stable_argsort(keys)
        sorted_keys = keys[order]
        n = len(keys)
        first = np.ones(n, dtype=bool)
        first[1:] = sorted_keys[1:] != sorted_keys[:-1]
        starts = np.flatnonzero(first)
        sizes = np.diff(np.append(starts, n))
        group = np.cumsum(first) - 1
        rank = np.arange(n) - starts[group]
        by_size = np.argsort(-sizes, kind="stable")
        longest = int(sizes.max()) if n else 0
        active = np.searchsorted(-sizes[by_size], -np.arange(longest), side="left")
        return cls(order, sorted_keys, starts, sizes, rank, group, by_size, active)

    def steps(self) -> Iterator[tuple[int, np.ndarray]]:
        """(k, sorted positions of the k-th row of every group with more than k rows), k = 0, 1, ...

        The positions of step k belong to groups `_by_size[:len(positions)]`, in that order, so a
        recurrence keeps its per-group state in arrays indexed like `_by_size` and updates a prefix.
        """
        for k, count in enumerate(self._active):
            yield k, self.starts[self._by_size[:count]] + k


def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """np.argsort(keys, kind="stable") for non-negative integer keys, faster: made unique by the
    position, the keys sort the same with the (unstable, quicker) default algorithm."""
    n = len(keys)
    if n == 0 or keys.min() < 0 or int(keys.max()) >= (1 << 62) // max(n, 1):
        return np.argsort(keys, kind="stable")
    return np.argsort(keys * n + np.arange(n))


def search(sorted_keys: np.ndarray, queries: np.ndarray, side: str = "left") -> np.ndarray:
    """np.searchsorted for many unordered queries: sorted first, the lookups stay in cache."""
    order = np.argsort(queries)
    out = np.empty(len(queries), dtype=np.int64)
    out[order] = np.searchsorted(sorted_keys, queries[order], side=side)
    return out


def count_at_or_before(groups: Groups, values: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """For each sorted position i: how many rows of i's group have `values <= bound[i]`.

    `values` (at sorted positions) must be non-decreasing inside each group, as event times are.
    """
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    low = int(min(values.min(), bound.min()))
    span = int(max(values.max(), bound.max())) - low + 1
    composite = groups.group * span + (values - low)
    query = groups.group * span + (bound - low)
    return np.searchsorted(composite, query, side="right") - groups.starts[groups.group]


def uniforms(digests: bytes, count: int, draws: int) -> list[np.ndarray]:
    """The first `draws` uniforms `Draw` takes from each of `count` concatenated digests."""
    if draws * DRAW_CHUNK > DRAW_DIGEST_SIZE:
        raise ValueError(f"at most {DRAW_DIGEST_SIZE // DRAW_CHUNK} uniforms per digest")
    table = np.frombuffer(digests, dtype=np.uint8).reshape(count, DRAW_DIGEST_SIZE)
    out = []
    for k in range(draws):
        value = np.zeros(count, dtype=np.uint64)
        for byte in range(k * DRAW_CHUNK, (k + 1) * DRAW_CHUNK):  # big-endian, as int.from_bytes
            value = (value << np.uint64(8)) | table[:, byte].astype(np.uint64)
        out.append(value.astype(np.float64) / DRAW_SCALE)
    return out


class Vocab:
    """Strings <-> dense integer codes (entities, terminals, countries) shared by all columns."""

    __slots__ = ("codes", "names")

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.names: list[str] = []

    def code(self, name: str) -> int:
        code = self.codes.get(name)
        if code is None:
            code = self.codes[name] = len(self.names)
            self.names.append(name)
        return code

    def codes_of(self, names: list[str]) -> np.ndarray:
        return np.array([self.code(name) for name in names], dtype=np.int64)
