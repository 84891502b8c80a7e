"""The traffic closed loop without Kafka: SUMO readings -> decisions -> signals -> feedback -> learning.

It lives in connectors/ because it drives the simulator (scenarios must not import connectors).
The seam the Kafka version replaces is two functions over the wire format:

    decide(events: list[bytes]) -> list[dict]     # readings as on `traffic.events` -> Decision dicts
    feedback(records: list[bytes]) -> None        # Measurements as on `traffic.feedback`

`InProcessAgent` implements both with the pure core (parse, observe, policy, join, Q-learning) in
this process; the Kafka version publishes to traffic.events / traffic.feedback and awaits
traffic.actions instead. A decision that does not come back in time keeps the current phase.

    python -m connectors.traffic_loop --net single      # the fixed / max-pressure / learned table
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from connectors.sumo import SimSummary, SumoSim
from connectors.sumo_net import NETWORKS, ensure_demand, ensure_network
from streams.core import learning
from streams.core.policies import make_policy
from streams.core.scenario import Decision, Draw, InvalidEvent, Observation, Transition
from streams.core.table import Row
from streams.scenarios.traffic import Reading, TrafficScenario, fixed_time_action
from streams.settings import load_settings

Decide = Callable[[list[bytes]], list[dict[str, Any]]]
Feedback = Callable[[list[bytes]], None]
# (reading, observation, decision id) -> (action, propensity): how an agent picks.
Chooser = Callable[[Reading, Observation, str], tuple[str, float]]

POLICIES = ("fixed_time", "max_pressure", "learned")


@dataclass(slots=True)
class LearnConfig:
    """Q-learning settings; gamma > 0 because a green now shapes the queues of the next minutes."""

    alpha: float = 0.1
    gamma: float = 0.8
    epsilon: float = 0.1


class InProcessAgent:
    """decide + join + learn over the pure core: what the Kafka agents do, in one process."""

    def __init__(
        self,
        scenario: TrafficScenario,
        name: str,
        choose: Chooser,
        *,
        table: dict[str, Row] | None = None,
        learn: LearnConfig | None = None,
    ) -> None:
        self.scenario = scenario
        self.name = name
        self.choose = choose
        self.table: dict[str, Row] = {} if table is None else table
        self.learn = learn
        self.states: dict[str, Any] = {}
        self.pending: dict[str, Decision] = {}
        self.dead_letters: list[tuple[bytes, str]] = []
        self.transitions: list[dict[str, Any]] = []  # what would go to traffic.learning
        self.updates = 0

    def decide(self, events: list[bytes]) -> list[dict[str, Any]]:
        sc = self.scenario
        out = []
        for raw in events:
            try:
                reading = sc.parse(raw)
            except InvalidEvent as exc:
                self.dead_letters.append((raw, exc.reason))
                continue
            key = sc.key(reading)
            state = sc.update(self.states.get(key) or sc.initial_state(), reading)
            self.states[key] = state
            obs = sc.observe(state, reading)
            decision_id = sc.decision_id(reading)
            action, prob = self.choose(reading, obs, decision_id)
            decision = Decision(
                decision_id=decision_id,
                entity=key,
                action=sc.effective_action(obs, action),
                prob=prob,
                policy=self.name,
                policy_version=self.updates,
                state_key=obs.state_key,
                event_ts=sc.event_ts(reading),
                decision_ts=time.time(),
                event_id=sc.event_id(reading),
                features=obs.features,
            )
            if self.learn is not None:
                self.pending[decision_id] = decision
            out.append(decision.to_dict())
        return out

    def feedback(self, records: list[bytes]) -> None:
        """Join each measurement with its pending decision, then learn from the transition."""
        sc = self.scenario
        for raw in records:
            try:
                outcome = sc.parse_outcome(raw)
            except InvalidEvent as exc:
                self.dead_letters.append((raw, exc.reason))
                continue
            decision = self.pending.pop(sc.outcome_decision_id(outcome), None)
            if decision is None or self.learn is None:
                continue
            t = Transition(
                decision_id=decision.decision_id,
                state_key=decision.state_key,
                action=decision.action,
                prob=decision.prob,
                reward=sc.reward(decision, outcome),
                next_state_key=outcome.next_state_key,
                event_ts=decision.event_ts,
            )
            self.transitions.append(t.to_dict())
            self._learn(t)

    def _learn(self, t: Transition) -> None:
        cfg = self.learn
        assert cfg is not None
        row = self.table.setdefault(t.state_key, Row.empty(len(self.scenario.actions)))
        nxt = self.table.get(t.next_state_key) if t.next_state_key else None
        if learning.apply(
            row,
            t,
            self.scenario.actions.index(t.action),
            alpha=cfg.alpha,
            gamma=cfg.gamma,
            next_max=learning.next_max_of(nxt),
        ):
            self.updates += 1


def max_pressure_chooser(scenario: TrafficScenario) -> Chooser:
    return lambda reading, obs, _id: (scenario.baseline(obs), 1.0)


def fixed_time_chooser(plans: dict[str, Sequence[float]]) -> Chooser:
    return lambda reading, obs, _id: (fixed_time_action(reading, plans[reading.intersection_id]), 1.0)


def table_chooser(scenario: TrafficScenario, table: dict[str, Row], epsilon: float) -> Chooser:
    """epsilon-greedy on the Q-table, exactly as the Kafka decide agent calls the policy.

    A state never learned gets the policy's default (index 0, phase "0"); exploration and the
    optimistic zero of untried actions (rewards are centred near 0) cover the rest.
    """
    policy = make_policy("qtable", scenario.actions, scenario.baseline, epsilon=epsilon, temperature=1.0)

    def choose(reading: Reading, obs: Observation, decision_id: str) -> tuple[str, float]:
        index, prob = policy.choose(table.get(obs.state_key), obs, Draw(decision_id))
        return scenario.actions[index], prob

    return choose


@dataclass(slots=True)
class LoopResult:
    net: str
    policy: str
    seed: int
    summary: SimSummary
    readings: int
    decisions: int
    wall_s: float
    learning_updates: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def run_closed_loop(
    net: str = "single",
    policy_name: str = "max_pressure",
    duration_s: int = 3600,
    seed: int = 1,
    decide: Decide | None = None,
    feedback: Feedback | None = None,
    *,
    scenario: TrafficScenario | None = None,
    table: dict[str, Row] | None = None,
    learn: LearnConfig | None = None,
    run: str = "",
    drain_s: int = 1800,
    demand_scale: float = 1.0,
    cache_dir: Path | None = None,
    out_dir: Path | None = None,
    epoch0: float = 0.0,
    tap: Feedback | None = None,
) -> LoopResult:
    """One simulation under one policy. `decide`/`feedback` default to an in-process agent.

    For "learned", `table` is read and (with `learn`) updated online; pass the same dict across
    runs to train over several episodes. The run ends when the demand period is over and every
    vehicle has left, or `drain_s` later. Event time is `epoch0` + simulated seconds. `tap` also
    receives every step's readings (fixed time over Kafka publishes them without asking for a
    decision); `out_dir` is where SUMO writes its tripinfo (default: under the cache).
    """
    scenario = scenario or TrafficScenario()
    cache = (cache_dir or load_settings().data_dir / "sumo").resolve()
    spec = NETWORKS[net]
    net_file = ensure_network(spec, cache)
    trips = ensure_demand(
        spec, net_file, duration_s=duration_s, seed=seed, cache_dir=cache, scale=demand_scale
    )
    out_dir = out_dir or cache / net / "runs" / f"{policy_name}-{run or 'run'}-seed{seed}"
    started = time.perf_counter()
    agent: InProcessAgent | None = None
    readings = decisions = 0
    with SumoSim(
        net_file,
        trips,
        out_dir,
        seed=seed,
        min_green_s=scenario.min_green_s,
        yellow_s=scenario.yellow_s,
        epoch0=epoch0,
    ) as sim:
        if decide is None:
            agent = _default_agent(scenario, policy_name, sim, table, learn)
            decide, feedback = agent.decide, agent.feedback
        last_decision: dict[str, str] = {}
        while True:
            due = sim.due()
            if due:
                decisions += _control_step(sim, scenario, due, run, decide, feedback, last_decision, tap)
                readings += len(due)
            if sim.time >= duration_s and (sim.vehicles_pending() == 0 or sim.time >= duration_s + drain_s):
                break
            sim.step(1)
    return LoopResult(
        net=net,
        policy=policy_name,
        seed=seed,
        summary=sim.summary(),
        readings=readings,
        decisions=decisions,
        wall_s=time.perf_counter() - started,
        learning_updates=agent.updates if agent else 0,
    )


def _control_step(
    sim: SumoSim,
    scenario: TrafficScenario,
    due: list[str],
    run: str,
    decide: Decide,
    feedback: Feedback | None,
    last_decision: dict[str, str],
    tap: Feedback | None = None,
) -> int:
    """Readings out (with feedback for each light's previous decision), actions in; returns #answered.

    Actions are matched by decision id, so a stale answer to an earlier reading is never applied;
    a reading without an answer keeps its phase (the simulator counts it as missing).
    """
    raws = [orjson.dumps(r) for r in sim.readings(due, run=run)]
    parsed = [scenario.parse(r) for r in raws]
    if tap is not None:
        tap(raws)
    if feedback is not None:
        feedback(
            [
                orjson.dumps(scenario.measurement(last_decision[p.intersection_id], p).to_dict())
                for p in parsed
                if p.intersection_id in last_decision
            ]
        )
    actions = {a["decision_id"]: a["action"] for a in decide(raws)}
    answered = 0
    for p in parsed:
        decision_id = scenario.decision_id(p)
        action = actions.get(decision_id)
        sim.apply(p.intersection_id, action)
        last_decision[p.intersection_id] = decision_id
        answered += action is not None
    return answered


def _default_agent(
    scenario: TrafficScenario,
    policy_name: str,
    sim: SumoSim,
    table: dict[str, Row] | None,
    learn: LearnConfig | None,
) -> InProcessAgent:
    if policy_name == "fixed_time":
        plans = {t: s.plan for t, s in sim.signals.items()}
        return InProcessAgent(scenario, policy_name, fixed_time_chooser(plans))
    if policy_name == "max_pressure":
        return InProcessAgent(scenario, policy_name, max_pressure_chooser(scenario))
    if policy_name == "learned":
        table = {} if table is None else table
        epsilon = learn.epsilon if learn else 0.0
        return InProcessAgent(
            scenario, policy_name, table_chooser(scenario, table, epsilon), table=table, learn=learn
        )
    raise ValueError(f"unknown policy {policy_name!r}; valid: {', '.join(POLICIES)}")


def training_seed(seed: int, episode: int) -> int:
    """Demand seed of a training episode: disjoint from every evaluation seed below 10,000."""
    return 10_000 + seed * 100 + episode


def train(
    net: str,
    episodes: int,
    *,
    duration_s: int,
    seed: int,
    learn: LearnConfig,
    scenario: TrafficScenario | None = None,
    table: dict[str, Row] | None = None,
) -> dict[str, Row]:
    """Q-learning over `episodes` simulations on demand seeds disjoint from the evaluation seed."""
    table = {} if table is None else table
    for i in range(episodes):
        run_closed_loop(
            net,
            "learned",
            duration_s,
            seed=training_seed(seed, i),
            scenario=scenario,
            table=table,
            learn=learn,
            run=f"train{i}",
        )
    return table


def compare(
    net: str,
    *,
    duration_s: int = 3600,
    seed: int = 1,
    train_episodes: int = 20,
    learn: LearnConfig | None = None,
    eval_epsilon: float = 0.02,
) -> list[LoopResult]:
    """fixed_time vs max_pressure vs learned on the same evaluation demand (seed)."""
    learn = learn or LearnConfig()
    scenario = TrafficScenario()
    results = [run_closed_loop(net, p, duration_s, seed, scenario=scenario) for p in POLICIES[:2]]
    started = time.perf_counter()
    table = train(net, train_episodes, duration_s=duration_s, seed=seed, learn=learn, scenario=scenario)
    train_s = time.perf_counter() - started
    online = LearnConfig(alpha=learn.alpha, gamma=learn.gamma, epsilon=eval_epsilon)
    learned = run_closed_loop(
        net, "learned", duration_s, seed, scenario=scenario, table=table, learn=online, run="eval"
    )
    learned.extra = {"train_episodes": train_episodes, "train_s": round(train_s, 1), "states": len(table)}
    return [*results, learned]


COLUMNS = (  # header, value of a result
    ("net", lambda r: r.net),
    ("policy", lambda r: r.policy),
    ("avg wait s", lambda r: f"{r.summary.avg_wait_s:.1f}"),
    ("avg travel s", lambda r: f"{r.summary.avg_travel_s:.1f}"),
    ("completed", lambda r: str(r.summary.vehicles_completed)),
    ("unfinished", lambda r: str(r.summary.vehicles_unfinished)),
    ("mean queue", lambda r: f"{r.summary.mean_queue:.2f}"),
    ("wall s", lambda r: f"{r.wall_s:.1f}"),
)


def format_table(results: list[LoopResult]) -> str:
    """A Markdown table, one row per run."""
    rows = [[h for h, _ in COLUMNS], ["---"] * len(COLUMNS)]
    rows += [[value(r) for _, value in COLUMNS] for r in results]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", choices=sorted(NETWORKS), action="append")
    p.add_argument("--duration", type=int, default=3600, help="demand period, simulated seconds")
    p.add_argument("--seed", type=int, default=1, help="evaluation demand seed")
    p.add_argument("--train-episodes", type=int, default=20)
    p.add_argument("--json", action="store_true", help="print results as JSON")
    args = p.parse_args(argv)
    started = time.perf_counter()
    results = [
        r
        for net in args.net or ["single"]
        for r in compare(net, duration_s=args.duration, seed=args.seed, train_episodes=args.train_episodes)
    ]
    if args.json:
        print(
            orjson.dumps(
                [{**r.summary.to_dict(), "net": r.net, "policy": r.policy, **r.extra} for r in results]
            ).decode()
        )
    else:
        print(format_table(results))
        for r in results:
            if r.extra:
                print(f"{r.net} learned: {r.extra}")
    print(f"total wall time {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
