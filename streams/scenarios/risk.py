"""Card-fraud risk: approve, review or decline each card transaction, learning from chargebacks.

Pure Python (stdlib + orjson; numpy for the columnar twins the replay's fast path uses): the Faust
agents, the replay engines and the tests all call this.

Per-event flow, and the order matters: `obs = observe(state, tx)` THEN `update(state, tx)`.
Features describe the account's history *before* this transaction (the z-score of the amount
against earlier amounts, "is this terminal new", "how many transactions in the last minute before
this one"); folding the transaction in first would dilute exactly the signals that expose fraud.

Feedback is a `Label` (chargeback or confirmed-legit) that arrives minutes to hours later; a
decision whose label never arrives within the pending TTL is judged legit (`no_feedback_outcome`).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from itertools import product
from typing import Any, Protocol

import numpy as np
import orjson

from streams.core.columnar import Groups, count_at_or_before
from streams.core.scenario import (
    Decision,
    InvalidEvent,
    Observation,
    draw_digests_of_ids,
    stable_id,
    stable_ids,
)

ACTIONS = ("approve", "review", "decline")
CHANNELS = frozenset({"pos", "ecom", "atm"})
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_AMOUNT = 1_000_000.0
MAX_ID_LEN = 64
MIN_TS = 946_684_800.0  # 2000-01-01T00:00:00Z
MAX_TS_NO_CLOCK = 4_102_444_800.0  # 2100-01-01: the absolute ceiling when no clock is given
DEFAULT_MAX_FUTURE_S = 86_400.0
NEVER_SECS = 30 * 86_400.0  # secs_since_last for an account's first transaction (JSON-safe, not inf)
MAX_TERMINALS = 16

# Ring windows as (bucket width seconds, bucket count): 1 min, 1 h, 1 day.
WINDOW_1M = (10, 6)
WINDOW_1H = (300, 12)
WINDOW_1D = (3600, 24)

# Terminal risk = (frauds + prior * k) / (labels + k); counts halve past TERMINAL_MAX_LABELS so the
# rate follows the terminal's recent labels (a compromise ends, the risk fades).
TERMINAL_PRIOR = 0.01
TERMINAL_K = 20.0
TERMINAL_MAX_LABELS = 200

# State-key bucket edges (bisect_right: a value equal to an edge goes to the upper bucket).
AMOUNT_EDGES = (25.0, 100.0, 300.0, 1000.0)  # a0..a4: the cost of approving fraud IS the amount
VELOCITY_EDGES = (2.0, 4.0)  # v0..v2 on count_1m (transactions in the minute before this one)
Z_EDGES = (3.0,)  # z0..z1 on amount_z
TERMINAL_RISK_EDGES = (0.03, 0.1)  # t0..t2
MIN_STD_FLOOR = 1.0  # z-score denominator floor: max(std, 0.25 * mean, 1.0)

TX_FIELDS = (
    "transaction_id",
    "account_id",
    "terminal_id",
    "amount",
    "currency",
    "merchant_category",
    "country",
    "channel",
    "event_ts",
)
LABEL_FIELDS = ("transaction_id", "account_id", "terminal_id", "is_fraud", "label_ts")
_TX_FIELD_SET = frozenset(TX_FIELDS)
_LABEL_FIELD_SET = frozenset(LABEL_FIELDS)
_JSON_TYPES = {
    type(None): "null",
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


# --- events and outcomes ------------------------------------------------------------------------


@dataclass(slots=True)
class Transaction:
    """One card transaction as validated by `RiskScenario.parse`."""

    transaction_id: str
    account_id: str
    terminal_id: str
    amount: float
    currency: str
    merchant_category: str
    country: str
    channel: str
    event_ts: float

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in TX_FIELDS}


@dataclass(slots=True)
class Label:
    """The truth about one transaction: a chargeback (fraud) or a confirmed-legit label."""

    transaction_id: str
    account_id: str
    terminal_id: str
    is_fraud: bool
    label_ts: float

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in LABEL_FIELDS}


DECISION_ID_PREFIX = ("risk",)


def decision_id_for(transaction_id: str) -> str:
    """The one decision id of a transaction: the decide path and the feedback join both use it."""
    return stable_id(*DECISION_ID_PREFIX, transaction_id)


def decision_ids_for(transaction_ids: list[bytes]) -> list[str]:
    """`decision_id_for` of many UTF-8 encoded transaction ids at once."""
    return stable_ids(DECISION_ID_PREFIX, transaction_ids)


def draw_digests_for(transaction_ids: list[bytes], salt: bytes = b"") -> bytes:
    """The digests of `Draw(decision_id_for(tid) + salt)` for many transaction ids, concatenated."""
    return draw_digests_of_ids(DECISION_ID_PREFIX, transaction_ids, salt)


# --- validation helpers (shared by events and labels) --------------------------------------------


def _channel(d: dict[str, Any], name: str) -> str:
    channel = d[name]
    if type(channel) is not str or channel not in CHANNELS:
        raise InvalidEvent(f"unknown channel {_show(channel)}")
    return channel


def string_field_ok(name: str, value: str) -> bool:
    """Whether `parse`/`parse_outcome` accept this value for this string field (the columnar reader
    checks each distinct value once with the parser's own check)."""
    check = _STRING_CHECKS[name]
    try:
        check({name: value}, name)
    except InvalidEvent:
        return False
    return True


def amounts_ok(amount: np.ndarray) -> np.ndarray:
    """The amount checks of `parse` for a column of finite numbers."""
    return (amount > 0.0) & (amount <= MAX_AMOUNT)


def timestamps_ok(ts: np.ndarray) -> np.ndarray:
    """The checks of `RiskScenario._timestamp` without a clock, for a column of finite numbers."""
    return (ts >= MIN_TS) & (ts <= MAX_TS_NO_CLOCK)


def _clip(text: str) -> str:
    """Bounded text for reasons: untrusted input must not blow up the DLQ headers."""
    return text if len(text) <= 40 else text[:37] + "..."


def _show(value: object) -> str:
    return _clip(repr(value))


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _decode_object(raw: bytes, fields: tuple[str, ...], field_set: frozenset[str]) -> dict[str, Any]:
    """Size check, orjson decode, and exact field set: the checks every record shares."""
    if type(raw) is not bytes and not isinstance(raw, bytearray | memoryview):
        raise InvalidEvent(f"payload must be bytes, got {type(raw).__name__}")
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise InvalidEvent(f"payload of {len(raw)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if raw[:1] == b"\x00" and len(raw) >= 5:  # say what it is: the usual mix-up, not random bytes
            schema_id = int.from_bytes(raw[1:5], "big")
            raise InvalidEvent(
                f"Confluent Avro wire format (schema id {schema_id}) where JSON is expected"
            ) from None
        raise InvalidEvent(f"invalid JSON: {exc}") from None
    if type(d) is not dict:
        raise InvalidEvent(f"not a JSON object (got {_json_type(d)})")
    if d.keys() != field_set:
        missing = [name for name in fields if name not in d]
        if missing:
            raise InvalidEvent(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        extra = sorted(_clip(k) for k in d if k not in field_set)
        shown = ", ".join(extra[:5]) + (", ..." if len(extra) > 5 else "")
        raise InvalidEvent(f"unexpected fields: {shown}")
    return d


def _text(d: dict[str, Any], name: str) -> str:
    value = d[name]
    if type(value) is not str:
        raise InvalidEvent(f"{name} must be a string, got {_json_type(value)}")
    if not value or value.isspace():
        raise InvalidEvent(f"empty {name}")
    if len(value) > MAX_ID_LEN:
        raise InvalidEvent(f"{name} longer than {MAX_ID_LEN} characters")
    return value


def _number(d: dict[str, Any], name: str) -> float:
    """A finite JSON number; booleans are rejected (in Python `True` is an int)."""
    value = d[name]
    kind = type(value)
    if kind is not float and kind is not int:
        raise InvalidEvent(f"{name} must be a number, got {_json_type(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise InvalidEvent(f"{name} must be finite, got {value}")
    return value


def _code(d: dict[str, Any], name: str, length: int, digits: bool) -> str:
    """A fixed-length ASCII code: upper-case letters (currency, country) or digits (MCC)."""
    value = d[name]
    if type(value) is not str:
        raise InvalidEvent(f"{name} must be a string, got {_json_type(value)}")
    ok = len(value) == length and value.isascii()
    ok = ok and (value.isdigit() if digits else value.isalpha() and value.isupper())
    if not ok:
        what = "digits" if digits else "upper-case letters"
        raise InvalidEvent(f"{name} must be {length} {what}, got {_show(value)}")
    return value


_STRING_CHECKS: dict[str, Callable[[dict[str, Any], str], str]] = {
    "transaction_id": _text,
    "account_id": _text,
    "terminal_id": _text,
    "currency": lambda d, name: _code(d, name, 3, digits=False),
    "merchant_category": lambda d, name: _code(d, name, 4, digits=True),
    "country": lambda d, name: _code(d, name, 2, digits=False),
    "channel": _channel,
}


def state_index(a: Any, v: Any, z: Any, t: Any, n: Any, c: Any) -> Any:
    """Bucket indices -> the state's index in STATE_KEYS (plain ints or numpy int arrays alike)."""
    return ((((a * 3 + v) * 2 + z) * 3 + t) * 2 + n) * 3 + c


STATE_KEYS: tuple[str, ...] = tuple(
    f"a{a}|v{v}|z{z}|t{t}|n{n}|c{c}"
    for a, v, z, t, n, c in product(
        range(len(AMOUNT_EDGES) + 1), range(3), range(2), range(3), range(2), range(3)
    )
)


def state_key(
    amount: float,
    count_1m: float,
    amount_z: float,
    terminal_risk: float,
    new_terminal: bool,
    cnp: bool,
    foreign: bool,
) -> str:
    """The decision-table key "a2|v0|z1|t0|n1|c2": 5 * 3 * 2 * 3 * 2 * 3 = 540 possible states.

    a: amount (0-4), v: velocity = transactions in the minute before (0-2), z: amount z-score
    (0-1), t: terminal risk (0-2), n: new terminal (0-1), c: card-not-present + foreign (0 neither,
    1 one of them, 2 both). Few enough states that each is visited often at a 0.7% fraud rate.
    `state_index_columns` is its columnar twin (np.searchsorted(side="right") is bisect_right).
    """
    return STATE_KEYS[
        state_index(
            bisect_right(AMOUNT_EDGES, amount),
            bisect_right(VELOCITY_EDGES, count_1m),
            bisect_right(Z_EDGES, amount_z),
            bisect_right(TERMINAL_RISK_EDGES, terminal_risk),
            int(new_terminal),
            int(cnp) + int(foreign),
        )
    ]


def state_index_columns(
    amount: np.ndarray,
    count_1m: np.ndarray,
    amount_z: np.ndarray,
    terminal_risk: np.ndarray,
    new_terminal: np.ndarray,
    cnp: np.ndarray,
    foreign: np.ndarray,
) -> np.ndarray:
    """`state_key` for columns of events, as indices into STATE_KEYS."""
    return state_index(
        np.searchsorted(AMOUNT_EDGES, amount, side="right"),
        np.searchsorted(VELOCITY_EDGES, count_1m, side="right"),
        np.searchsorted(Z_EDGES, amount_z, side="right"),
        np.searchsorted(TERMINAL_RISK_EDGES, terminal_risk, side="right"),
        new_terminal.astype(np.int64),
        cnp.astype(np.int64) + foreign.astype(np.int64),
    )


def baseline_code(
    amount: Any, risk: Any, count_1m: Any, amount_z: Any, new_terminal: Any, cnp: Any, foreign: Any
) -> Any:
    """The rule baseline as an index into ACTIONS, for one event (floats, bools) or columns (numpy
    arrays, bool arrays): only operators both understand, so there is one definition of the rule.

    Decline: a large amount on a risky terminal, or a card-testing burst (many card-not-present
    foreign transactions within a minute). Review: large or unusual amounts, or a risky
    terminal. Approve the rest.
    """
    big = amount >= 100.0
    risky = risk >= 0.1
    decline = ((count_1m >= 4) & cnp & foreign) | ((amount >= 1000.0) & risky)
    unusual = (amount_z >= 3.0) & big
    stranger = new_terminal & cnp & foreign & big
    review = (amount >= 500.0) | unusual | stranger | risky
    return 2 * decline + (review > decline)  # decline 2, else review 1, else approve 0


# --- per-account state ----------------------------------------------------------------------------


@dataclass(slots=True)
class RingWindow:
    """Count and amount sum over the last `n` buckets of `width` seconds: bounded memory per account.

    Invariant: slot `j % n` holds bucket `j` for every j in (head - n, head]; older buckets are
    zeroed as the head advances. An event older than the head but still inside the window is added
    to its own bucket (small disorder is harmless); one older than the window is dropped, exactly as
    if it had already expired.
    """

    width: int
    n: int
    head: int = -1
    counts: list[int] = field(default_factory=list)
    sums: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * self.n
            self.sums = [0.0] * self.n

    def add(self, ts: float, amount: float) -> None:
        b = int(ts // self.width)
        n = self.n
        head = self.head
        if b > head:
            counts, sums = self.counts, self.sums
            if b - head >= n:
                counts[:] = [0] * n
                sums[:] = [0.0] * n
            else:
                for j in range(head + 1, b + 1):
                    counts[j % n] = 0
                    sums[j % n] = 0.0
            self.head = head = b
        elif b <= head - n:
            return
        self.counts[b % n] += 1
        self.sums[b % n] += amount

    def totals_at(self, ts: float) -> tuple[int, float]:
        """(count, sum) over the window ending at ts's bucket, or at the head if ts is older.

        Read-only: buckets that ts's window no longer covers are subtracted, not cleared (the
        loop runs b - head times, usually 0 or 1).
        """
        b = int(ts // self.width)
        head, n = self.head, self.n
        if b - head >= n:
            return 0, 0.0
        counts, sums = self.counts, self.sums
        count, total = sum(counts), sum(sums)
        if b > head:
            for j in range(head + 1, b + 1):
                count -= counts[j % n]
                total -= sums[j % n]
            total = max(total, 0.0)  # float subtraction must not report a negative sum
        return count, total

    def to_list(self) -> list[Any]:
        return [self.head, list(self.counts), list(self.sums)]

    @classmethod
    def from_list(cls, spec: tuple[int, int], data: list[Any]) -> RingWindow:
        width, n = spec
        head, counts, sums = data
        if len(counts) != n or len(sums) != n:
            raise ValueError(f"window of {n} buckets stored with {len(counts)}/{len(sums)}")
        return cls(width, n, int(head), [int(c) for c in counts], [float(s) for s in sums])


def _window(spec: tuple[int, int]) -> RingWindow:
    return RingWindow(*spec)


@dataclass(slots=True)
class AccountState:
    """Everything remembered about one account; JSON-safe via to_dict/from_dict (RocksDB table)."""

    win_1m: RingWindow = field(default_factory=lambda: _window(WINDOW_1M))
    win_1h: RingWindow = field(default_factory=lambda: _window(WINDOW_1H))
    win_1d: RingWindow = field(default_factory=lambda: _window(WINDOW_1D))
    n: int = 0  # Welford: count, mean and sum of squared deviations of the amount
    mean: float = 0.0
    m2: float = 0.0
    terminals: list[str] = field(default_factory=list)  # most recent last, at most MAX_TERMINALS
    last_ts: float = 0.0  # 0.0: never seen
    home_country: str = ""  # the first country seen
    last_offsets: dict[str, int] = field(default_factory=dict)  # partition -> last applied offset

    @property
    def std(self) -> float:
        """Sample standard deviation (n - 1), 0.0 below two transactions."""
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "w1m": self.win_1m.to_list(),
            "w1h": self.win_1h.to_list(),
            "w1d": self.win_1d.to_list(),
            "n": self.n,
            "mean": self.mean,
            "m2": self.m2,
            "terminals": list(self.terminals),
            "last_ts": self.last_ts,
            "home": self.home_country,
            "offsets": dict(self.last_offsets),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AccountState:
        return cls(
            win_1m=RingWindow.from_list(WINDOW_1M, d["w1m"]),
            win_1h=RingWindow.from_list(WINDOW_1H, d["w1h"]),
            win_1d=RingWindow.from_list(WINDOW_1D, d["w1d"]),
            n=int(d["n"]),
            mean=float(d["mean"]),
            m2=float(d["m2"]),
            terminals=[str(t) for t in d["terminals"]],
            last_ts=float(d["last_ts"]),
            home_country=str(d["home"]),
            last_offsets={str(k): int(v) for k, v in d["offsets"].items()},
        )


# --- terminal statistics ------------------------------------------------------------------------


class StatsView(Protocol):
    """Read access to terminal_id -> [frauds, labels]: a dict, or the adapter's table view."""

    def get(self, key: str, default: Any = None, /) -> Any: ...


def terminal_risk_of(
    stats: StatsView | None,
    terminal_id: str,
    prior: float = TERMINAL_PRIOR,
    k: float = TERMINAL_K,
) -> float:
    """Smoothed fraud rate of a terminal: an unseen terminal gets the prior, not 0 or 1."""
    entry = stats.get(terminal_id) if stats is not None else None
    if not entry:
        return prior
    return (entry[0] + prior * k) / (entry[1] + k)


def label_terminal(
    stats: MutableMapping[str, list[int]], label: Label, max_labels: int = TERMINAL_MAX_LABELS
) -> list[int] | None:
    """Fold one label into terminal_id -> [frauds, labels]; returns the new entry.

    The entry is replaced, never mutated in place, so a Faust table notices the write. Labels
    without a terminal (no-feedback outcomes) carry no evidence about any terminal: skipped.
    """
    if not label.terminal_id:
        return None
    frauds, labels = stats.get(label.terminal_id) or (0, 0)
    frauds, labels = frauds + (1 if label.is_fraud else 0), labels + 1
    if labels > max_labels:
        frauds, labels = frauds // 2, labels // 2
    entry = [frauds, labels]
    stats[label.terminal_id] = entry
    return entry


# --- columnar twins of update/observe (the replay's fast path) -----------------------------------
#
# Over a replay (every event of an account in event-time order, every label joined at its own time)
# the account's state before each transaction is a function of the account's earlier transactions
# only, so `observe` can be computed for all events at once. Each function states what it
# reproduces; tests/unit/test_replay_columnar.py checks every decision and state key against the
# scalar `observe`/`update` above.


@dataclass(slots=True)
class TxColumns:
    """Transactions as columns, in event-time order; strings as codes (`streams.core.columnar.Vocab`)."""

    ts: np.ndarray
    amount: np.ndarray
    account: np.ndarray
    terminal: np.ndarray
    country: np.ndarray
    ecom: np.ndarray  # channel == "ecom": card not present


def _velocity_columns(groups: Groups, ts: np.ndarray) -> np.ndarray:
    """`win_1m.totals_at(ts)[0]` before each event: the account's earlier events whose bucket is in
    (b - n, b] (in event-time order b never trails the ring's head, so nothing else is in the ring)."""
    width, n = WINDOW_1M
    bucket = np.floor_divide(ts, width).astype(np.int64)  # int(ts // width)
    older = count_at_or_before(groups, bucket, bucket - n)
    return groups.rank - older


def _zscore_columns(groups: Groups, amount: np.ndarray) -> np.ndarray:
    """`amount_z` from the Welford state before each event, by the same operations as `update`."""
    size = len(groups.sizes)
    mean, m2 = np.zeros(size), np.zeros(size)
    mean_before, m2_before = np.zeros(len(amount)), np.zeros(len(amount))
    for k, at in groups.steps():
        lanes = len(at)
        mean_before[at], m2_before[at] = mean[:lanes], m2[:lanes]
        x = amount[at]
        delta = x - mean[:lanes]
        mean[:lanes] = mean[:lanes] + delta / (k + 1)
        m2[:lanes] = m2[:lanes] + delta * (x - mean[:lanes])
    n = groups.rank
    seen = n > 1
    std = np.zeros(len(amount))
    std[seen] = np.sqrt(m2_before[seen] / (n[seen] - 1))
    floor = np.maximum(np.maximum(std, 0.25 * mean_before), MIN_STD_FLOOR)
    z = np.zeros(len(amount))
    z[seen] = (amount[seen] - mean_before[seen]) / floor[seen]
    return z


def _new_terminal_columns(groups: Groups, terminal: np.ndarray) -> np.ndarray:
    """`terminal_id not in state.terminals`: the list keeps the MAX_TERMINALS most recently used
    distinct terminals, so a terminal is still in it iff fewer than MAX_TERMINALS distinct others
    were used since its last use."""
    pairs = Groups.of(groups.group * (int(terminal.max(initial=0)) + 1) + terminal)
    # in `pairs` order, consecutive positions with the same key are one terminal's uses, in time order
    repeat = np.zeros(len(terminal), dtype=bool)
    repeat[1:] = pairs.keys[1:] == pairs.keys[:-1]
    now, before = pairs.order[1:][repeat[1:]], pairs.order[:-1][repeat[1:]]
    gap = groups.rank[now] - groups.rank[before] - 1
    known = np.zeros(len(terminal), dtype=bool)
    known[now[gap < MAX_TERMINALS]] = True
    # A longer gap: count the distinct terminals in it, i.e. the uses whose previous use of the same
    # terminal is not inside the gap.
    previous = np.full(len(terminal), -1, dtype=np.int64)
    previous[now] = before
    for i, j in zip(now[gap >= MAX_TERMINALS].tolist(), before[gap >= MAX_TERMINALS].tolist(), strict=True):
        known[i] = np.count_nonzero(previous[j + 1 : i] <= j) < MAX_TERMINALS
    return ~known


def account_columns(
    tx: TxColumns, groups: Groups | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(count_1m, amount_z, new_terminal, foreign) of every event, as `observe` sees them."""
    groups = Groups.of(tx.account) if groups is None else groups  # the caller may have them already
    at = groups.order
    out_count = np.empty(len(at), dtype=np.int64)
    out_z, out_new, out_foreign = np.empty(len(at)), np.empty(len(at), dtype=bool), np.empty(len(at), bool)
    out_count[at] = _velocity_columns(groups, tx.ts[at])
    out_z[at] = _zscore_columns(groups, tx.amount[at])
    out_new[at] = _new_terminal_columns(groups, tx.terminal[at])
    country = tx.country[at]
    home = country[groups.starts[groups.group]]  # the first country seen
    out_foreign[at] = (groups.rank > 0) & (country != home)
    return out_count, out_z, out_new, out_foreign


def terminal_label_columns(
    groups: Groups, is_fraud: np.ndarray, max_labels: int = TERMINAL_MAX_LABELS
) -> tuple[np.ndarray, np.ndarray]:
    """(frauds, labels) of each label's slice right after `label_terminal` folded it in; labels
    in the order they are joined, grouped by slice (terminal * partitions + partition)."""
    size, count = len(groups.sizes), len(groups.order)
    frauds, labels = np.zeros(size, dtype=np.int64), np.zeros(size, dtype=np.int64)
    frauds_after, labels_after = np.zeros(count, np.int64), np.zeros(count, np.int64)
    fraud = is_fraud[groups.order].astype(np.int64)
    for _, at in groups.steps():
        lanes = len(at)
        f, n = frauds[:lanes] + fraud[at], labels[:lanes] + 1
        full = n > max_labels
        f[full], n[full] = f[full] // 2, n[full] // 2
        frauds[:lanes], labels[:lanes] = f, n
        frauds_after[groups.order[at]], labels_after[groups.order[at]] = f, n
    return frauds_after, labels_after


def terminal_risk_columns(
    frauds: np.ndarray, labels: np.ndarray, prior: float = TERMINAL_PRIOR, k: float = TERMINAL_K
) -> np.ndarray:
    """`terminal_risk_of` for summed (frauds, labels) columns; labels == 0 means no entry yet."""
    return np.where(labels > 0, (frauds + prior * k) / (labels + k), prior)


# --- the scenario ---------------------------------------------------------------------------------


def default_costs(review_fee: float, friction_cost: float) -> dict[tuple[str, bool], tuple[float, float]]:
    """(action, is_fraud) -> (fixed cost, cost per unit of amount).

    Approving fraud loses the amount; declining a legit customer costs friction (lost sale, call
    centre); a review costs the analyst fee and catches the fraud.
    """
    return {
        ("approve", True): (0.0, 1.0),
        ("approve", False): (0.0, 0.0),
        ("review", True): (review_fee, 0.0),
        ("review", False): (review_fee, 0.0),
        ("decline", True): (0.0, 0.0),
        ("decline", False): (friction_cost, 0.0),
    }


class RiskScenario:
    """The card-fraud scenario: see the module docstring for the observe-then-update order."""

    name = "risk"
    actions = ACTIONS
    outcome_features = ("amount",)  # what `reward` reads: all a pending decision needs to keep

    def __init__(
        self,
        terminal_stats: StatsView | None = None,
        review_fee: float = 5.0,
        friction_cost: float = 20.0,
        *,
        costs: Mapping[tuple[str, bool], tuple[float, float]] | None = None,
        clock: Callable[[], float] | None = None,
        max_future_s: float = DEFAULT_MAX_FUTURE_S,
    ) -> None:
        """`clock` (e.g. `time.time`) enables the "at most `max_future_s` ahead of now" check.

        Without a clock only absurd times (before 2000, after 2100) are rejected: the generator and
        replays run on simulated time that may be far from the wall clock.
        """
        self.terminal_stats: StatsView = {} if terminal_stats is None else terminal_stats
        self.review_fee = review_fee
        self.friction_cost = friction_cost
        self.costs = dict(costs) if costs is not None else default_costs(review_fee, friction_cost)
        self.clock = clock
        self.max_future_s = max_future_s

    # --- parsing ----------------------------------------------------------------------------
    def _timestamp(self, d: dict[str, Any], name: str) -> float:
        ts = _number(d, name)
        if ts < MIN_TS:
            raise InvalidEvent(f"{name} {ts} is before 2000-01-01")
        if self.clock is None:
            if ts > MAX_TS_NO_CLOCK:
                raise InvalidEvent(f"{name} {ts} is after 2100-01-01")
        elif ts > self.clock() + self.max_future_s:
            raise InvalidEvent(f"{name} {ts} is more than {self.max_future_s:g}s in the future")
        return ts

    def parse(self, raw: bytes) -> Transaction:
        d = _decode_object(raw, TX_FIELDS, _TX_FIELD_SET)
        amount = _number(d, "amount")
        if amount <= 0.0:
            raise InvalidEvent("amount must be a positive finite number")
        if amount > MAX_AMOUNT:
            raise InvalidEvent(f"amount {amount} exceeds the {MAX_AMOUNT:.0f} limit")
        channel = _channel(d, "channel")
        return Transaction(
            _text(d, "transaction_id"),
            _text(d, "account_id"),
            _text(d, "terminal_id"),
            amount,
            _code(d, "currency", 3, digits=False),
            _code(d, "merchant_category", 4, digits=True),
            _code(d, "country", 2, digits=False),
            channel,
            self._timestamp(d, "event_ts"),
        )

    def parse_outcome(self, raw: bytes) -> Label:
        d = _decode_object(raw, LABEL_FIELDS, _LABEL_FIELD_SET)
        is_fraud = d["is_fraud"]
        if type(is_fraud) is not bool:
            raise InvalidEvent(f"is_fraud must be a boolean, got {_json_type(is_fraud)}")
        return Label(
            _text(d, "transaction_id"),
            _text(d, "account_id"),
            _text(d, "terminal_id"),
            is_fraud,
            self._timestamp(d, "label_ts"),
        )

    # --- identity ---------------------------------------------------------------------------
    def key(self, event: Transaction) -> str:
        return event.account_id

    def event_id(self, event: Transaction) -> str:
        return event.transaction_id

    def event_ts(self, event: Transaction) -> float:
        return event.event_ts

    def decision_id(self, event: Transaction) -> str:
        return decision_id_for(event.transaction_id)

    def outcome_decision_id(self, outcome: Label) -> str:
        return decision_id_for(outcome.transaction_id)

    # --- state --------------------------------------------------------------------------------
    def initial_state(self) -> AccountState:
        return AccountState()

    def state_to_dict(self, state: AccountState) -> dict[str, Any]:
        return state.to_dict()

    def state_from_dict(self, data: dict[str, Any]) -> AccountState:
        return AccountState.from_dict(data)

    def update(self, state: AccountState, event: Transaction) -> AccountState:
        """Fold the transaction into the account's state, in place; returns the same object."""
        ts, amount = event.event_ts, event.amount
        state.win_1m.add(ts, amount)
        state.win_1h.add(ts, amount)
        state.win_1d.add(ts, amount)
        state.n += 1
        delta = amount - state.mean
        state.mean += delta / state.n
        state.m2 += delta * (amount - state.mean)
        terminals = state.terminals
        if event.terminal_id in terminals:
            terminals.remove(event.terminal_id)
        elif len(terminals) >= MAX_TERMINALS:
            del terminals[0]
        terminals.append(event.terminal_id)
        if ts > state.last_ts:
            state.last_ts = ts
        if not state.home_country:
            state.home_country = event.country
        return state

    def terminal_risk(self, terminal_id: str) -> float:
        return terminal_risk_of(self.terminal_stats, terminal_id)

    def record_outcome(self, stats: MutableMapping[str, list[int]], outcome: Label) -> None:
        """The join agent's hook: fold a label into the terminal statistics it owns."""
        label_terminal(stats, outcome)

    def observe(self, state: AccountState, event: Transaction) -> Observation:
        """Features of the transaction against the account's history BEFORE it (see module doc)."""
        ts, amount = event.event_ts, event.amount
        count_1m, _ = state.win_1m.totals_at(ts)
        count_1h, _ = state.win_1h.totals_at(ts)
        _, sum_1d = state.win_1d.totals_at(ts)
        n, mean = state.n, state.mean
        std = math.sqrt(state.m2 / (n - 1)) if n > 1 else 0.0
        amount_z = (amount - mean) / max(std, 0.25 * mean, MIN_STD_FLOOR) if n > 1 else 0.0
        new_terminal = event.terminal_id not in state.terminals
        risk = terminal_risk_of(self.terminal_stats, event.terminal_id)
        cnp = event.channel == "ecom"
        foreign = bool(state.home_country) and event.country != state.home_country
        secs = max(0.0, ts - state.last_ts) if state.last_ts else NEVER_SECS
        return Observation(
            state_key(amount, count_1m, amount_z, risk, new_terminal, cnp, foreign),
            {
                "amount": amount,
                "amount_z": amount_z,
                "count_1m": float(count_1m),
                "count_1h": float(count_1h),
                "sum_1d": sum_1d,
                "mean": mean,
                "std": std,
                "distinct_terminals": float(len(state.terminals)),
                "secs_since_last": secs,
                "new_terminal": float(new_terminal),
                "terminal_risk": risk,
                "cnp": float(cnp),
                "foreign": float(foreign),
            },
        )

    # --- decisions and outcomes -----------------------------------------------------------
    def baseline(self, obs: Observation) -> str:
        """What a fraud analyst writes on day one, before any learning (see `baseline_code`)."""
        f = obs.features
        code = baseline_code(
            f["amount"], f["terminal_risk"], f["count_1m"], f["amount_z"],
            f["new_terminal"] != 0.0, f["cnp"] != 0.0, f["foreign"] != 0.0,
        )  # fmt: skip
        return ACTIONS[code]

    def cost(self, action: str, is_fraud: bool, amount: float) -> float:
        fixed, per_amount = self.costs[action, is_fraud]
        return fixed + per_amount * amount

    def reward_columns(self, action: np.ndarray, is_fraud: np.ndarray, amount: np.ndarray) -> np.ndarray:
        """`reward` for columns (action indices, outcomes, amounts): the same -(fixed + per * amount)."""
        table = np.array([[self.costs[name, fraud] for fraud in (False, True)] for name in ACTIONS])
        fraud = is_fraud.astype(np.intp)
        return -(table[action, fraud, 0] + table[action, fraud, 1] * amount)

    def reward(self, decision: Decision, outcome: Label) -> float:
        """Minus the cost; the amount comes from the decision's features (the outcome lacks it)."""
        return -self.cost(decision.action, outcome.is_fraud, decision.features["amount"])

    def no_feedback_outcome(self, decision: Decision, now: float | None = None) -> Label:
        """The outcome of a decision whose label never came within the TTL: legit.

        Card fraud surfaces as a chargeback; none within the TTL means the cardholder did not
        dispute it. The terminal id is left empty so the terminal's statistics are not touched
        (absence of a label is not evidence about the terminal).
        """
        return Label(
            transaction_id=decision.event_id,
            account_id=decision.entity,
            terminal_id="",
            is_fraud=False,
            label_ts=decision.event_ts if now is None else now,
        )
