"""`python -m perf.replay_topic`: a 1M-event risk replay read from Kafka topics, next to the same
records replayed from a JSONL file, in one session (perf/RESULTS-replay.md).

An embedded broker is started; `--events` generated records (seed 42: events and their labels) go
to the scenario's events and feedback topics, and one action record per event (the shape of
`Decision.to_dict`, a synthetic live log: a fixed action per transaction, not a real policy) to the
actions topic; the same records are written as JSONL. Then, `--runs` times each, in rotation:
`agentstream replay --input FILE`, `agentstream replay --no-live` (the topics), and
`agentstream replay` (the topics and the live comparison), all with `-p rules -p qtable --chart
--json`. Printed per variant: the CLI's own rate (read + parse + replay + report) and the whole
process (`/usr/bin/time`: start, imports, chart included), medians with min/max, and whether the
reports of the file and topic replays are byte-identical. `--baseline DIR` (a checkout of an
earlier commit, e.g. `git worktree add /tmp/base HEAD~1`) runs the topic variants of that code too,
in the same rotation, as `base:topic` and `base:topic+live`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from connectors.admin import ensure_topics
from connectors.broker import EmbeddedKafka
from connectors.generate import RiskGenerator, generate_to_jsonl
from connectors.publish import Publisher
from streams.scenarios.risk import ACTIONS, decision_id_for
from streams.settings import Settings, load_settings

VARIANTS = {"file": ["--input"], "topic": ["--no-live"], "topic+live": []}
_RATE = re.compile(r"in ([0-9.]+)s: ([0-9,]+)\s+events/s")


def _records(settings: Settings, events: int) -> Iterator[tuple[str, bytes | None, bytes]]:
    topics = settings.topics()
    for r in RiskGenerator(42).records(events):
        yield (topics.events if r.kind == "event" else topics.feedback), r.key, r.value


def _live_log(settings: Settings, events: int) -> Iterator[tuple[str, bytes | None, bytes]]:
    actions = settings.topics().actions
    for r in RiskGenerator(42).records(events):
        if r.kind != "event":
            continue
        v = orjson.loads(r.value)
        tid = v["transaction_id"]
        decision = {
            "decision_id": decision_id_for(tid), "event_id": tid, "entity": v["account_id"],
            "action": ACTIONS[1 if hashlib.blake2b(tid.encode()).digest()[0] < 26 else 0], "prob": 0.95,
            "policy": "qtable", "policy_version": 1, "state_key": "amt=low|vel=0|new=0|risk=low",
            "event_ts": v["event_ts"], "decision_ts": v["event_ts"] + 0.01,
            "features": {"amount": v["amount"], "tx_count_1h": 1.0, "amount_ratio": 1.0},
        }  # fmt: skip
        yield actions, r.key, orjson.dumps(decision)


def _run(args: list[str], env: dict[str, str], chart: Path) -> tuple[float, float, str]:
    """(CLI seconds, whole-process seconds, the report line)."""
    cli = [sys.executable, "-m", "streams.cli"]  # the code on PYTHONPATH (a baseline) or this one
    cmd = [
        *cli,
        "replay",
        *args,
        "-p",
        "rules",
        "-p",
        "qtable",
        "--chart",
        str(chart),
        "--json",
    ]
    began = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    whole = time.perf_counter() - began
    found = _RATE.search(" ".join(out.stderr.split()))
    if found is None:
        raise RuntimeError(f"no rate in the output of {' '.join(cmd)}:\n{out.stderr[-2000:]}")
    return float(found.group(1)), whole, out.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.replay_topic", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="generated events (labels come with them)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--baseline", type=Path, help="a checkout of earlier code to run the topic variants of")
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="replay-topic-"))
    base = load_settings(data_dir=work / "data")
    jsonl = work / "risk.jsonl"
    generate_to_jsonl(jsonl, a.events, seed=42)
    with EmbeddedKafka(brokers=1, settings=base) as kafka:
        settings = base.with_overrides(bootstrap_servers=kafka.bootstrap)
        ensure_topics(settings, settings.topics().all())
        for what, records in (("events and labels", _records), ("live log", _live_log)):
            began = time.perf_counter()
            sent = Publisher(settings).publish(records(settings, a.events)).sent
            print(
                f"published {sent:,} records ({what}) in {time.perf_counter() - began:.1f}s", file=sys.stderr
            )
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap}
        base_env = {**env, "PYTHONPATH": str(a.baseline.resolve())} if a.baseline else env
        variants = {name: (args, env) for name, args in VARIANTS.items()}
        if a.baseline:
            variants |= {f"base:{name}": (VARIANTS[name], base_env) for name in ("topic", "topic+live")}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        reports: dict[str, set[str]] = {name: set() for name in variants}
        for k in range(a.runs):
            for name, (args, run_env) in variants.items():
                args = [*args, str(jsonl)] if args == ["--input"] else args
                cli, whole, report = _run(args, run_env, work / f"{name}.png")
                times[name].append((cli, whole))
                reports[name].add(hashlib.md5(report.encode()).hexdigest())
                print(f"run {k + 1} {name}: CLI {cli:.2f}s, whole process {whole:.2f}s", file=sys.stderr)
    print(f"{a.events:,} events, medians of {a.runs} (min - max)")
    print(f"{'variant':<16} {'CLI s':>24} {'events/s':>10} {'whole s':>24} {'events/s':>10}")
    for name, runs in times.items():
        cli, whole = [c for c, _ in runs], [w for _, w in runs]
        print(
            f"{name:<16} {statistics.median(cli):>8.2f} ({min(cli):.2f} - {max(cli):.2f}) "
            f"{a.events / statistics.median(cli):>10,.0f} {statistics.median(whole):>8.2f} "
            f"({min(whole):.2f} - {max(whole):.2f}) {a.events / statistics.median(whole):>10,.0f}"
        )
    same = len(reports["file"] | reports["topic"]) == 1
    print(f"file and topic reports byte-identical in every run: {same}")
    if a.baseline:
        equal = reports["topic+live"] == reports["base:topic+live"]
        print(f"live reports byte-identical to the baseline's: {equal}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
