"""The columnar replay: the risk scenario's replay computed over columns, with the scalar engine's results.

What is sequential in a replay is only what depends on the policy: a learner's choice at an event
depends on every label joined before it. Everything else is fixed by the input: the accounts'
features before each transaction (`account_columns`), the terminal statistics folded from the labels
joined before it (`terminal_label_columns`), the join itself (each label meets the decision for its
transaction) and the draws (`Draw(decision_id)`). So those are computed for all events at once with
numpy, and one plain loop over the labels does the rest (`_learn`): each label updates its decision's
row (`learning.update_values`) in join order, and the row's greedy action after every update is kept,
so each event's choice (`EpsilonGreedy.pick_columns`) is its state's greedy action after the labels
joined before it.

The result is the scalar engine's (`engine.py`) exactly, which tests/unit/test_replay_columnar.py
checks event by event. It covers the usual replay: unique transaction ids, every label after its
transaction and keyed by its account, nothing expiring, rules and epsilon-greedy policies; live
decisions, when given, are looked up by decision id and judged like the others. Anything else
raises `NotColumnar` with the reason and the scalar engine runs instead: early or unknown labels,
duplicates and expiry change the join in ways only the per-event
`PendingDecisions` reproduces.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Mapping
from itertools import islice
from typing import Any

import numpy as np

from connectors.partitioning import partition_for
from streams.core.columnar import Groups, search, uniforms
from streams.core.learning import update_values
from streams.core.policies import EpsilonGreedy, RuleBaseline
from streams.core.table import RECENT_IDS, Row
from streams.replay.draws import PARALLEL_MIN_EVENTS, DrawDigests
from streams.replay.engine import (
    LIVE,
    EngineConfig,
    LiveDecision,
    PolicyRun,
    PolicySpec,
    ReplayResult,
    copy_table,
)
from streams.replay.live_log import LiveLog
from streams.replay.risk_input import RiskColumns
from streams.scenarios.risk import (
    ACTIONS,
    DECISION_ID_PREFIX,
    STATE_KEYS,
    RiskScenario,
    TxColumns,
    account_columns,
    baseline_code,
    decision_id_for,
    decision_ids_for,
    state_index_columns,
    terminal_label_columns,
    terminal_risk_columns,
)

PROGRESS_EVERY = 0xFFFF


class NotColumnar(Exception):
    """This replay needs the scalar engine; the message says why."""


def check_columnar(scenario: Any, specs: list[PolicySpec]) -> None:
    """Raise NotColumnar unless the scenario and policies are ones the columnar path computes."""
    if not isinstance(scenario, RiskScenario):
        raise NotColumnar(f"scenario {scenario.name!r}")
    for spec in specs:
        policy = spec.policy
        if isinstance(policy, RuleBaseline) and policy.rule == scenario.baseline:
            continue
        if not isinstance(policy, EpsilonGreedy):
            raise NotColumnar(f"policy {spec.label!r}")


def run_columnar(
    scenario: RiskScenario,
    specs: list[PolicySpec],
    config: EngineConfig,
    cols: RiskColumns,
    progress: Callable[[int], None] | None = None,
    keep_state_keys: bool = False,
    live: Callable[[], Mapping[str, LiveDecision] | None] | None = None,
) -> ReplayResult:
    """The replay of `cols` for `specs`, as `ReplayEngine.run` computes it (see the module doc);
    `live()`: the logged decisions to compare with, by decision id, asked for once the policies
    have run (a topic reader may still be reading them until then)."""
    tl = _Timeline.of(cols)
    draws = None
    if any(isinstance(spec.policy, EpsilonGreedy) for spec in specs):  # hashed while the join is planned
        parallel = tl.events >= PARALLEL_MIN_EVENTS
        draws = DrawDigests(DECISION_ID_PREFIX, tl.ev_tid, _draw_salt(config), parallel)
    accounts = Groups.of(tl.ev_account)
    label_event = _join(tl, accounts, config)
    state, rule = _perceive(tl, cols, accounts, config.partitions)
    fraud = np.zeros(tl.events, dtype=bool)
    fraud[label_event] = tl.lb_fraud
    runs = []
    for spec in specs:
        run = PolicyRun(spec.label, len(ACTIONS), tl.events, copy_table(spec.table))
        if isinstance(spec.policy, EpsilonGreedy):
            assert draws is not None
            actions, probs = _learner(spec.policy, run, config, tl, state, label_event, fraud, scenario,
                                      draws, progress)  # fmt: skip
        else:
            actions, probs = rule, np.ones(tl.events)
        rewards = scenario.reward_columns(actions, fraud, tl.ev_amount)
        run.actions = array("b", actions.astype(np.int8).tobytes())
        run.probs = array("d", probs.astype(np.float64).tobytes())
        run.rewards = array("d", rewards.tobytes())
        run.counts = np.bincount(actions, minlength=len(ACTIONS)).tolist()
        runs.append(run)
    logged = None if live is None else live()
    live_run, live_keys = (None, []) if logged is None else _live(scenario, logged, tl, fraud)
    counters: Counter[str] = Counter()
    if len(label_event):
        counters["feedback_joined"] = len(label_event)
    if tl.events - len(label_event):
        counters["pending_at_end"] = tl.events - len(label_event)
    counters["decisions"] = tl.events
    if progress is not None:
        progress(tl.events + len(label_event))
    return ReplayResult(
        actions=ACTIONS,
        events=tl.events,
        event_ts=array("d", tl.ev_ts.tobytes()),
        positive=bytearray(fraud.astype(np.uint8).tobytes()),
        runs=runs,
        live=live_run,
        live_keys=live_keys,
        counters=counters,
        invalid=cols.invalid,
        config=config,
        state_keys=[STATE_KEYS[i] for i in state.tolist()] if keep_state_keys else None,
    )


def _live(
    scenario: RiskScenario, live: Mapping[str, LiveDecision], tl: _Timeline, fraud: np.ndarray
) -> tuple[PolicyRun, list[str | None]]:
    """The logged decision of each event (if the actions topic has one), judged like the others."""
    log = LiveLog.of(live)
    at = np.fromiter(log.positions(decision_ids_for(tl.ev_tid)), dtype=np.int64, count=tl.events)
    decided = at >= 0
    found = np.where(decided, at, 0)
    if len(log):
        actions = np.where(decided, np.frombuffer(log.actions, dtype=np.int8)[found], -1).astype(np.int8)
        probs = np.where(decided, np.frombuffer(log.probs)[found], 0.0)
        codes = np.frombuffer(log.state_codes, dtype=np.int32)[found]
    else:
        actions, probs, codes = np.full(tl.events, -1, np.int8), np.zeros(tl.events), found
    rewards = np.where(decided, scenario.reward_columns(np.maximum(actions, 0), fraud, tl.ev_amount), 0.0)
    run = PolicyRun(LIVE, len(ACTIONS), tl.events, {})
    run.actions = array("b", actions.tobytes())
    run.probs = array("d", probs.tobytes())
    run.rewards = array("d", rewards.tobytes())
    run.counts = np.bincount(actions[decided], minlength=len(ACTIONS)).tolist()
    keys = log.state_keys
    return run, [keys[c] if d else None for c, d in zip(codes.tolist(), decided.tolist(), strict=True)]


class _Timeline:
    """Events and labels in timeline order (time, events before labels, arrival), and where each
    one is in the merged order."""

    def __init__(self, cols: RiskColumns) -> None:
        ev, lb = _time_order(cols.ev_seq, cols.ev_ts), _time_order(cols.lb_seq, cols.lb_ts)
        self.events, self.labels = len(ev), len(lb)
        self.ev_ts, self.ev_amount = cols.ev_ts[ev], cols.ev_amount[ev]
        self.ev_account, self.ev_terminal = cols.ev_account[ev], cols.ev_terminal[ev]
        self.ev_country, self.ev_ecom = cols.ev_country[ev], cols.ev_ecom[ev]
        self.ev_tid = _reordered(cols.ev_tid, ev)
        self.lb_key, self.lb_terminal, self.lb_fraud = (
            cols.lb_key[lb],
            cols.lb_terminal[lb],
            cols.lb_fraud[lb],
        )
        self.lb_tid = _reordered(cols.lb_tid, lb)
        # A stable sort by time of [events, labels], each already in (time, arrival) order: ties go
        # to events, then to arrival. Both runs are sorted, so the (timsort) merge is linear.
        self.merged = np.argsort(np.concatenate((self.ev_ts, cols.lb_ts[lb])), kind="stable")
        position = np.empty(len(self.merged), dtype=np.int64)
        position[self.merged] = np.arange(len(self.merged))
        self.ev_pos, self.lb_pos = position[: len(ev)], position[len(ev) :]

    @classmethod
    def of(cls, cols: RiskColumns) -> _Timeline:
        return cls(cols)


def _reordered(values: list[bytes], order: np.ndarray) -> list[bytes]:
    if not len(order) or (order[1:] > order[:-1]).all():  # already in order: the usual case
        return values
    return [values[i] for i in order.tolist()]


def _time_order(seq: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Indices in (time, arrival) order; inputs are mostly in arrival order and close to time order,
    which stable sorts (timsort) exploit."""
    by_arrival = np.argsort(seq, kind="stable")
    return by_arrival[np.argsort(ts[by_arrival], kind="stable")]


def _join(tl: _Timeline, groups: Groups, config: EngineConfig) -> np.ndarray:
    """The event each label joins (labels in timeline order), or NotColumnar when a label would not
    simply join its decision: `PendingDecisions.join` would park, drop or refuse it."""
    label_event = _match_ids(tl.ev_tid, tl.lb_tid)
    if len(label_event) and np.bincount(label_event).max() > 1:
        raise NotColumnar("repeated labels")
    if (tl.ev_account[label_event] != tl.lb_key).any():
        raise NotColumnar("labels keyed by another entity than their transaction's")
    if (tl.lb_pos <= tl.ev_pos[label_event]).any():
        raise NotColumnar("labels before their transaction")
    # Expiry looks at an account's open decisions when its next event comes: nothing expires if no
    # event is more than the TTL after its account's first one.
    first_ts = tl.ev_ts[groups.order][groups.starts][groups.group]
    if (first_ts < tl.ev_ts[groups.order] - config.pending_ttl_s).any():
        raise NotColumnar("decisions would expire")
    return label_event


def _match_ids(events: list[bytes], labels: list[bytes]) -> np.ndarray:
    """The event index of each label's transaction id: matched on the ids' hashes with numpy, then
    every match compared in full; a hash collision (never seen in practice) takes a dict instead."""
    ev_hash = np.fromiter(map(hash, events), dtype=np.int64, count=len(events))
    order = np.argsort(ev_hash)
    ev_hash = ev_hash[order]
    if (ev_hash[1:] == ev_hash[:-1]).any():
        return _match_ids_by_dict(events, labels)
    lb_hash = np.fromiter(map(hash, labels), dtype=np.int64, count=len(labels))
    at = np.minimum(search(ev_hash, lb_hash), max(len(events) - 1, 0))
    if len(labels) and (not len(events) or (ev_hash[at] != lb_hash).any()):
        return _match_ids_by_dict(events, labels)
    label_event = order[at] if len(labels) else np.zeros(0, dtype=np.int64)
    if list(map(events.__getitem__, label_event.tolist())) != labels:
        return _match_ids_by_dict(events, labels)
    return label_event


def _match_ids_by_dict(events: list[bytes], labels: list[bytes]) -> np.ndarray:
    index = dict(zip(events, range(len(events)), strict=True))
    if len(index) != len(events):
        raise NotColumnar("repeated transaction ids")
    try:
        return np.fromiter(map(index.__getitem__, labels), dtype=np.int64, count=len(labels))
    except KeyError:
        raise NotColumnar("labels without their transaction") from None


def _perceive(
    tl: _Timeline, cols: RiskColumns, accounts: Groups, partitions: int
) -> tuple[np.ndarray, np.ndarray]:
    """(state index, rule action) of every event: `observe` + `baseline`, over columns. Labels
    join in timeline order (`_join` made sure of it), so their side statistics are a function of
    the labels alone."""
    tx = TxColumns(tl.ev_ts, tl.ev_amount, tl.ev_account, tl.ev_terminal, tl.ev_country, tl.ev_ecom)
    count_1m, amount_z, new_terminal, foreign = account_columns(tx, accounts)
    entity_partition = np.array(
        [partition_for(name.encode(), partitions) for name in cols.entities.names], dtype=np.int64
    )
    slices = tl.lb_terminal * partitions + entity_partition[tl.lb_key]
    by_slice = Groups.of(slices)  # each slice's labels in join order
    frauds, labels = terminal_label_columns(by_slice, tl.lb_fraud)
    risk = terminal_risk_columns(*_stats_before(tl, slices, by_slice, frauds, labels, partitions))
    state = state_index_columns(tl.ev_amount, count_1m, amount_z, risk, new_terminal, tl.ev_ecom, foreign)
    rule = baseline_code(tl.ev_amount, risk, count_1m, amount_z, new_terminal, tl.ev_ecom, foreign)
    return state, rule


def _stats_before(
    tl: _Timeline,
    slices: np.ndarray,
    by_slice: Groups,
    frauds: np.ndarray,
    labels: np.ndarray,
    partitions: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The (frauds, labels) sums over partitions that each event's terminal has when it is decided.

    A label moves its terminal's sum by its slice's change (what `PartitionedStats` does), so the
    sum after each label is a running total of those changes per terminal (integers: exact), and an
    event reads the total after its terminal's last label before it.
    """
    if not len(slices):
        return np.zeros(tl.events, dtype=np.int64), np.zeros(tl.events, dtype=np.int64)
    at = by_slice.order
    d_frauds, d_labels = frauds.copy(), labels.copy()
    later = at[by_slice.rank > 0]
    earlier = at[np.flatnonzero(by_slice.rank > 0) - 1]
    d_frauds[later] -= frauds[earlier]
    d_labels[later] -= labels[earlier]
    terminal = slices // partitions
    by_terminal = Groups.of(terminal)  # labels are in join order, so each group is too
    at = by_terminal.order
    total_f = _group_cumsum(by_terminal, d_frauds[at])
    total_n = _group_cumsum(by_terminal, d_labels[at])
    span = len(tl.ev_pos) + len(tl.lb_pos) + 1
    key = terminal[at] * span + tl.lb_pos[at]
    last = search(key, tl.ev_terminal * span + tl.ev_pos) - 1  # its terminal's last label before
    found = last >= 0
    found[found] = terminal[at][last[found]] == tl.ev_terminal[found]
    return np.where(found, total_f[last], 0), np.where(found, total_n[last], 0)


def _group_cumsum(groups: Groups, values: np.ndarray) -> np.ndarray:
    """Running sums inside each group (integers, so subtracting the group's offset is exact)."""
    total = np.cumsum(values)
    before = np.concatenate(([0], total))[groups.starts]
    return total - before[groups.group]


def _learner(
    policy: EpsilonGreedy,
    run: PolicyRun,
    config: EngineConfig,
    tl: _Timeline,
    state: np.ndarray,
    label_event: np.ndarray,
    fraud: np.ndarray,
    scenario: RiskScenario,
    draws: DrawDigests,
    progress: Callable[[int], None] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The sequential part, one step per label: the learner's choices only change when a label
    updates a row, and a row only learns from decisions made in its own state (gamma is not used:
    labels carry no next state). So the loop runs over labels, keeping each state's greedy action
    after every update; an event's greedy action is then its state's after the labels before it."""
    u1, u2 = uniforms(draws.result(), tl.events, 2)
    forced = policy.pick_columns(np.full(tl.events, -1), u1, u2)[0]  # explored action, or -1: greedy
    rows: list[Row | None] = [run.table.get(key) for key in STATE_KEYS]
    history = [[0 if row is None else row.best()] for row in rows]  # greedy action after k updates
    updates_before = np.zeros(tl.events, dtype=np.int64)
    if config.learning and len(label_event):
        updates_before = _labels_before(tl, state, label_event)
        _learn(policy, run, config, tl, state, label_event, fraud, scenario, rows, history, forced,
               updates_before, progress)  # fmt: skip
    offsets = np.cumsum([0] + [len(h) for h in history])
    flat = np.array([g for h in history for g in h], dtype=np.int64)
    greedy = flat[offsets[state] + updates_before]
    return policy.pick_columns(greedy, u1, u2)


def _draw_salt(config: EngineConfig) -> bytes:
    """What `--seed` appends to each decision id before its draw (see `Draw`)."""
    return b"" if config.seed is None else f"\x1f{config.seed}".encode()


def _labels_before(tl: _Timeline, state: np.ndarray, label_event: np.ndarray) -> np.ndarray:
    """For each event, how many labels of its state were joined before it."""
    span = len(tl.ev_pos) + len(tl.lb_pos) + 1
    key = np.sort(state[label_event] * span + tl.lb_pos)
    return search(key, state * span + tl.ev_pos) - search(key, state * span)


def _learn(
    policy: EpsilonGreedy,
    run: PolicyRun,
    config: EngineConfig,
    tl: _Timeline,
    state: np.ndarray,
    label_event: np.ndarray,
    fraud: np.ndarray,
    scenario: RiskScenario,
    rows: list[Row | None],
    history: list[list[int]],
    forced: np.ndarray,
    updates_before: np.ndarray,
    progress: Callable[[int], None] | None,
) -> None:
    """`learning.apply` of every label, in join order, to its decision's row."""
    n = len(ACTIONS)
    rewards = [scenario.reward_columns(np.full(len(label_event), a), fraud[label_event],
                                       tl.ev_amount[label_event]).tolist() for a in range(n)]  # fmt: skip
    seeded = bool(run.table)  # a snapshot's rows remember decision ids: check them as `apply` does
    label_state = state[label_event]
    alpha, gamma, update, best = config.alpha, config.gamma, update_values, Row.best
    columns = zip(label_event.tolist(), label_state.tolist(), forced[label_event].tolist(),
                  updates_before[label_event].tolist(), zip(*rewards, strict=True), strict=True)  # fmt: skip
    for block in range(0, len(label_event), PROGRESS_EVERY + 1):
        if progress is not None:
            progress(tl.events + block)
        for e, s, a, k, reward in islice(columns, PROGRESS_EVERY + 1):
            row, greedy = rows[s], history[s]
            if a < 0:
                a = greedy[k]
            if row is None:
                row = rows[s] = run.table[STATE_KEYS[s]] = Row.empty(n)
            if seeded:
                decision_id = decision_id_for(tl.ev_tid[e].decode())
                if row.seen(decision_id):
                    greedy.append(greedy[-1])
                    continue
                row.remember(decision_id)
            update(row, a, reward[a], alpha, gamma, 0.0)
            row.version += 1
            greedy.append(best(row))
    if not seeded:  # `apply` remembers each decision id: the rows keep the last RECENT_IDS of them
        by_state = Groups.of(label_state)
        last = by_state.order[by_state.rank >= (by_state.sizes - RECENT_IDS)[by_state.group]]
        decision_ids = decision_ids_for([tl.ev_tid[e] for e in label_event[last].tolist()])
        for s, did in zip(label_state[last].tolist(), decision_ids, strict=True):
            rows[s].remember(did)  # type: ignore[union-attr]
