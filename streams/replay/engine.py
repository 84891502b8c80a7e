"""The replay engine: one pass over an event-time timeline, every policy deciding every event.

It runs the live pipeline's steps through the same core, in the same order as the agents:
decide (`observe` -> `policy.choose` with `Draw(decision_id)` -> `update`), pending decisions
(`PendingDecisions`: early outcomes, duplicates, expiry by time-to-live), the join (`judge`, the
scenario's `record_outcome` side statistics) and learning (`learning.apply`, alpha/gamma from
Settings). Differences from live, all deliberate:
- learning is applied the moment a label is joined (live has a learning lag of a few ms to s);
- the expiry watermark is the replay's event time (live keeps one per partition; same order);
- early outcomes wait `early_outcome_ttl_s` of event time (live: wall-clock time);
- decisions still pending when the input ends are judged by the no-feedback rule, for the report
  only (nothing is learned from them, as nothing would come after).

Per-entity state, the observation and the side statistics do not depend on the policy (every
policy decides every event, so every label is joined), so they are computed once per event and
shared; only `choose`, the rows and the rewards are per policy. Per-event results go into flat
arrays indexed by event number (no per-event dicts per policy), and the garbage collector is paused
for the loop: millions of long-lived objects make its full passes the largest cost otherwise.
A pending decision keeps only the features the reward reads (`outcome_features`), as live does.
"""

from __future__ import annotations

import gc
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from connectors.partitioning import partition_for
from streams.core.learning import apply, next_max_of
from streams.core.pending import JoinStatus, PendingDecisions
from streams.core.policies import Policy
from streams.core.scenario import Decision, Draw, Scenario, Transition, judge
from streams.core.table import Row
from streams.replay.outcomes import PartitionedStats
from streams.replay.timeline import EVENT, Timeline

LIVE = "live"
PROGRESS_EVERY = 0x3FFF  # report progress every 16k records


class LiveDecision(NamedTuple):
    """What the live pipeline decided for one decision id (read from the actions topic; a tuple:
    a live log holds one per event, millions of them)."""

    action: int
    prob: float
    state_key: str


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """A policy to replay: its report label, the policy object and its starting decision table."""

    label: str
    policy: Policy
    table: Mapping[str, Row] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The knobs that must match the live pipeline for a replay to reproduce it (see `from_settings`)."""

    alpha: float
    gamma: float = 0.0
    pending_ttl_s: float = 86_400.0
    early_outcome_ttl_s: float = 600.0
    partitions: int = 1
    learning: bool = True
    seed: int | None = None  # None: Draw(decision_id), exactly live's randomness; else a salted draw

    @classmethod
    def from_settings(cls, settings: Any, *, learning: bool = True, seed: int | None = None) -> EngineConfig:
        return cls(
            alpha=settings.learning_rate,
            gamma=settings.discount,
            pending_ttl_s=settings.pending_ttl_s,
            early_outcome_ttl_s=settings.early_outcome_ttl_s,
            partitions=settings.partitions,
            learning=learning,
            seed=seed,
        )


class LazyDraw(Draw):
    """A Draw that hashes its seed on the first uniform: deterministic policies never pay for it.

    The numbers are exactly those of `Draw(seed)`: construction is only deferred.
    """

    __slots__ = ("_seed",)

    def __init__(self, seed: str) -> None:
        self._seed = seed
        self._i = -1

    def uniform(self) -> float:
        if self._i < 0:
            Draw.__init__(self, self._seed)
        return Draw.uniform(self)


@dataclass(slots=True)
class PolicyRun:
    """One policy's per-event results (arrays indexed by event number) and its decision table."""

    label: str
    n_actions: int
    events: int
    table: dict[str, Row]
    actions: array = field(init=False)  # action index per event; -1: no decision (live only)
    probs: array = field(init=False)
    rewards: array = field(init=False)
    counts: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.actions = array("b", [-1]) * self.events
        self.probs = array("d", [0.0]) * self.events
        self.rewards = array("d", [0.0]) * self.events
        self.counts = [0] * self.n_actions


@dataclass(slots=True)
class ReplayResult:
    """Everything the report needs: per-event arrays shared by all policies, and one run per policy."""

    actions: tuple[str, ...]
    events: int
    event_ts: array  # per event
    positive: bytearray  # per event: 1 if its outcome was positive (risk: a fraud label)
    runs: list[PolicyRun]
    live: PolicyRun | None
    live_keys: list[str | None]  # per event: the state key the live decision was made in
    counters: Counter[str]
    invalid: Counter[str]
    config: EngineConfig
    state_keys: list[str] | None = None  # per event, when asked for (tests compare the two engines)


@contextmanager
def gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class ReplayEngine:
    """Replays a timeline for several policies at once; see the module docstring for the semantics."""

    def __init__(
        self,
        scenario: Scenario,
        stats: PartitionedStats | None,
        specs: list[PolicySpec],
        config: EngineConfig,
        live: Mapping[str, LiveDecision] | None = None,
        keep_state_keys: bool = False,
    ) -> None:
        labels = [s.label for s in specs]
        if len(set(labels)) != len(labels) or LIVE in labels:
            raise ValueError(f"policy labels must be unique and not {LIVE!r}: {labels}")
        self.scenario = scenario
        self.stats = stats
        self.specs = specs
        self.config = config
        self.live = live
        self.keep_state_keys = keep_state_keys
        self._partitions: dict[str, int] = {}

    def partition(self, key: str) -> int:
        """The partition the live pipeline handles this entity in (events and feedback co-partitioned)."""
        p = self._partitions.get(key)
        if p is None:
            p = self._partitions[key] = partition_for(key.encode(), self.config.partitions)
        return p

    def run(self, timeline: Timeline, progress: Callable[[int], None] | None = None) -> ReplayResult:
        with gc_paused():
            return self._run(timeline, progress)

    def _run(self, timeline: Timeline, progress: Callable[[int], None] | None) -> ReplayResult:
        sc, cfg = self.scenario, self.config
        n_actions, n_events = len(sc.actions), timeline.events
        runs = [PolicyRun(s.label, n_actions, n_events, copy_table(s.table)) for s in self.specs]
        live_run = PolicyRun(LIVE, n_actions, n_events, {}) if self.live is not None else None
        live_keys: list[str | None] = [None] * n_events if self.live is not None else []
        event_ts = array("d", [0.0]) * n_events
        positive = bytearray(n_events)
        counters: Counter[str] = Counter()
        states: dict[str, Any] = {}
        pendings: dict[str, PendingDecisions] = {}
        deciders = [_decider(run, spec.policy) for run, spec in zip(runs, self.specs, strict=True)]
        if live_run is not None:
            deciders.append(_live_decider(live_run, self.live or {}, live_keys))
        join = _Joiner(self, runs, live_run, positive)
        key, decision_id, observe, update = sc.key, sc.decision_id, sc.observe, sc.update
        event_id, initial_state, parse_outcome = sc.event_id, sc.initial_state, sc.parse_outcome
        salt = None if cfg.seed is None else f"\x1f{cfg.seed}"
        ttl, early_ttl = cfg.pending_ttl_s, cfg.early_outcome_ttl_s
        kept = getattr(sc, "outcome_features", None)  # what `reward` reads: all a pending decision keeps
        watermark = float("-inf")
        state_keys: list[str] | None = [] if self.keep_state_keys else None
        seq = 0
        for i, (ts, kind, _arrival, item, record_key, raw) in enumerate(timeline.items):
            if progress is not None and not i & PROGRESS_EVERY:
                progress(i)
            if kind == EVENT:
                entity = key(item)
                state = states.get(entity)
                if state is None:
                    state = states[entity] = initial_state()
                pending = pendings.get(entity)
                if pending is None:
                    pending = pendings[entity] = PendingDecisions()
                did = decision_id(item)
                obs = observe(state, item)
                draw_seed = did if salt is None else did + salt
                for decide in deciders:
                    decide(seq, did, obs, draw_seed)
                update(state, item)
                if state_keys is not None:
                    state_keys.append(obs.state_key)
                features = obs.features if kept is None else {k: obs.features[k] for k in kept}
                stub = {
                    "decision_id": did,
                    "event_ts": ts,
                    "seq": seq,
                    "entity": entity,
                    "event_id": event_id(item),
                    "state_key": obs.state_key,
                    "features": features,
                }
                event_ts[seq] = ts
                seq += 1
                early = pending.take_early(did)
                if early is None:
                    pending.add(stub)
                else:  # its outcome came first: join now
                    join(stub, parse_outcome(early.encode()), entity)
                    counters["feedback_joined"] += 1
                if ts > watermark:
                    watermark = ts
                if pending.early:  # evict/expire are no-ops when nothing is old enough: skip the scans
                    counters["feedback_unknown"] += pending.evict_early(watermark, early_ttl)
                # open decisions were added in event-time order, so the first is the oldest
                if pending.open and next(iter(pending.open.values()))["event_ts"] < watermark - ttl:
                    for expired in pending.expire(watermark, ttl):
                        counters["expired"] += 1
                        join.no_feedback(expired, learn=True)
                continue
            pending = pendings.get(record_key)  # type: ignore[arg-type]
            if pending is None:
                pending = pendings[record_key] = PendingDecisions()  # type: ignore[index]
            status, stored = pending.join(sc.outcome_decision_id(item), raw.decode(), ts)  # type: ignore[union-attr]
            counters[f"feedback_{status.value}"] += 1
            if status is JoinStatus.JOINED and stored is not None:
                join(stored, item, record_key)  # type: ignore[arg-type]
        counters["decisions"] = seq
        for pending in pendings.values():  # the input ended: judge what is left, learn nothing
            for stored in pending.open.values():
                counters["pending_at_end"] += 1
                join.no_feedback(stored, learn=False)
        if progress is not None:
            progress(len(timeline.items))
        return ReplayResult(
            actions=tuple(sc.actions),
            events=n_events,
            event_ts=event_ts,
            positive=positive,
            runs=runs,
            live=live_run,
            live_keys=live_keys,
            counters=counters,
            invalid=timeline.invalid,
            config=cfg,
            state_keys=state_keys,
        )


def copy_table(table: Mapping[str, Row]) -> dict[str, Row]:
    """Each run learns on its own copy: a snapshot shared by two runs must not be mutated twice."""
    return {k: Row.from_dict(row.to_dict()) for k, row in table.items()}


Decide = Callable[[int, str, Any, str], None]


def _decider(run: PolicyRun, policy: Policy) -> Decide:
    """The per-event decide step of one policy, with its lookups bound once (it runs N x policies)."""
    table_get, choose = run.table.get, policy.choose
    actions, probs, counts = run.actions, run.probs, run.counts

    def decide(seq: int, _did: str, obs: Any, draw_seed: str) -> None:
        index, prob = choose(table_get(obs.state_key), obs, LazyDraw(draw_seed))
        actions[seq] = index
        probs[seq] = prob
        counts[index] += 1

    return decide


def _live_decider(run: PolicyRun, live: Mapping[str, LiveDecision], keys: list[str | None]) -> Decide:
    """The logged (live) decision for the event, if the actions topic has one."""
    get, actions, probs, counts = live.get, run.actions, run.probs, run.counts

    def decide(seq: int, did: str, _obs: Any, _draw_seed: str) -> None:
        logged = get(did)
        if logged is not None:
            actions[seq] = logged.action
            probs[seq] = logged.prob
            counts[logged.action] += 1
            keys[seq] = logged.state_key

    return decide


class _Joiner:
    """The join + learn steps: an outcome judges every policy's decision for the same event."""

    def __init__(
        self,
        engine: ReplayEngine,
        runs: list[PolicyRun],
        live: PolicyRun | None,
        positive: bytearray,
    ) -> None:
        sc, cfg = engine.scenario, engine.config
        self.engine = engine
        self.scenario = sc
        self.names = sc.actions
        self.runs = runs
        self.live = live
        self.learning = cfg.learning
        self.record_outcome = getattr(sc, "record_outcome", None) if engine.stats is not None else None
        self.no_feedback_rule = getattr(sc, "no_feedback_outcome", None)
        self.positive = positive
        self.alpha, self.gamma = cfg.alpha, cfg.gamma

    def __call__(self, stored: dict[str, Any], outcome: Any, entity: str, learn: bool = True) -> None:
        stats = self.engine.stats
        if self.record_outcome is not None and stats is not None:
            self.record_outcome(stats.slice(self.engine.partition(entity)), outcome)
        seq = stored["seq"]
        if getattr(outcome, "is_fraud", False):
            self.positive[seq] = 1
        decision = _decision(stored)  # one Decision, re-labelled per policy: judge keeps nothing of it
        names, scenario = self.names, self.scenario
        learn = learn and self.learning
        for run in self.runs:
            index = run.actions[seq]
            decision.action, decision.prob, decision.policy = names[index], run.probs[seq], run.label
            transition = judge(scenario, decision, outcome)
            run.rewards[seq] = transition.reward
            if learn:
                self._learn(run.table, transition, index)
        live = self.live
        if live is not None and live.actions[seq] >= 0:
            decision.action, decision.prob, decision.policy = names[live.actions[seq]], live.probs[seq], LIVE
            live.rewards[seq] = judge(scenario, decision, outcome).reward

    def _learn(self, table: dict[str, Row], transition: Transition, index: int) -> None:
        """The learn agent's step, applied at once (no learning lag in a replay)."""
        row = table.get(transition.state_key)
        if row is None:
            row = table[transition.state_key] = Row.empty(len(self.names))
        next_max = 0.0
        if self.gamma > 0 and transition.next_state_key:
            next_max = next_max_of(table.get(transition.next_state_key))
        apply(row, transition, index, alpha=self.alpha, gamma=self.gamma, next_max=next_max)

    def no_feedback(self, stored: dict[str, Any], *, learn: bool) -> None:
        """A decision whose outcome never came: the scenario's no-feedback rule judges it."""
        rule = self.no_feedback_rule
        if rule is not None:
            self(stored, rule(_decision(stored)), stored["entity"], learn=learn)


def _decision(stored: dict[str, Any]) -> Decision:
    """The shared part of a replayed decision (decision_ts is the event time: replays are timeless)."""
    ts = stored["event_ts"]
    return Decision(
        decision_id=stored["decision_id"],
        entity=stored["entity"],
        action="",
        prob=1.0,
        policy="",
        policy_version=0,
        state_key=stored["state_key"],
        event_ts=ts,
        decision_ts=ts,
        event_id=stored["event_id"],
        features=stored["features"],
    )
