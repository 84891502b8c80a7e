"""`python -m perf.restore`: how long a worker takes from start to ready with 1M keys in its table.

How the table is built: NOT by running 1M accounts' events through a worker (hours on 2 cores), but
by producing `--keys` changelog records of real account states straight into the `entities`
table's changelog topic, which is all a restore reads. Each state is the risk scenario's own fold
(`RiskScenario.parse` then `update`) over 1-5 valid transactions of its account, encoded exactly
as the worker encodes it (`streams.codecs.dumps(scenario.state_to_dict(state))`, see
`Pipeline.states` in streams/app.py), keyed by the account id, uncompressed like the worker's own
producer (`worker_compression=none`), murmur2-partitioned like the worker's events and changelog.
The states carry no `last_offsets` (no event of the events topic has been applied to them), so
events published afterwards for these accounts are decided on top of them.

Sequence (one worker, one state directory, one app id):
1. baseline: the worker starts on empty tables (this also creates the topics and the compacted
   changelogs, as every worker does); start -> ready; clean stop;
2. the 1M changelog records are produced;
3. per repeat: "deleted" (the worker's state directory removed: RocksDB rebuilt from the
   changelog) then "intact" (the directory the previous clean stop left; `streams/worker.py`
   keeps RocksDB only after a clean stop, which is checked). Each: start -> ready, where ready =
   the worker's metrics file says so (`streams/agents/reporting.py`: partitions assigned,
   Faust's table recovery completed), polled every 0.1 s, written by the worker every 1 s (so up to
   1 s late); Faust's own "Recovery complete" log line (the worker runs with --loglevel info) is
   reported next to it. Peak RSS during start-up is sampled.
4. after every stop: the worker's RocksDB `entities` partitions are opened read-only: the key
   count must be `--keys` and `--sample` random keys must hold exactly the produced bytes;
   after the last run also through the live path: `--probes` transactions for restored accounts
   are published, and their actions' features (mean, std, distinct terminals, new terminal, seconds
   since last) must equal `RiskScenario.observe` on the expected state: the history is in use.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from connectors.broker import free_port, kafka_cluster
from connectors.process import spawn, stop
from perf.bench import machine
from perf.implementations import workers_ready
from perf.sampler import TreeSampler
from streams.codecs import dumps
from streams.demo import worker_env
from streams.scenarios.risk import RiskScenario
from streams.settings import Settings, load_settings

OFFSET_KEY = b"__faust\0offset__"  # Faust's RocksDB store keeps the changelog offset under this key
COUNTRIES = (("US", "USD"), ("GB", "GBP"), ("DE", "EUR"), ("FR", "EUR"), ("CA", "CAD"))
START_TS = 1_704_067_200.0  # 2024-01-01, the generator's start
FAUST_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\].*?(Recovery complete|Restoring state)")


@dataclass
class RestoreConfig:
    keys: int = 1_000_000
    partitions: int = 4
    repeats: int = 1
    sample: int = 2_000
    probes: int = 20
    seed: int = 11
    ready_timeout_s: float = 1_800.0
    stop_timeout_s: float = 300.0
    keep_workdir: bool = False


@dataclass
class RunResult:
    case: str  # empty | deleted | intact
    ready_s: float | None
    faust_recovery_s: float | None  # from Faust's "Restoring state" to "Recovery complete" lines
    faust_restoring_at_s: float | None  # process start -> Faust's "Restoring state" line
    peak_rss_mb: float
    load_before: tuple[float, float, float]
    clean_stop: bool
    stop_s: float
    state_dir_mb: float
    keys_in_rocksdb: int | None = None
    sample_ok: int | None = None
    sample_checked: int | None = None
    probes_ok: int | None = None
    probes_checked: int | None = None
    notes: list[str] = field(default_factory=list)


# --- the states --------------------------------------------------------------------------------


def account_id(i: int) -> str:
    return f"R{i:07d}"


def transactions(i: int) -> Iterator[bytes]:
    """1-5 valid transactions of account i (deterministic), as the JSON the events topic carries."""
    country, currency = COUNTRIES[i % len(COUNTRIES)]
    for j in range(1 + i % 5):
        yield orjson.dumps(
            {
                "transaction_id": f"{account_id(i)}-{j}",
                "account_id": account_id(i),
                "terminal_id": f"T{(i * 7 + j * 13) % 2000:06d}",
                "amount": round(5.0 + (i * 37 + j * 101) % 400 + (j * 0.25), 2),
                "currency": currency,
                "merchant_category": "5411" if j % 2 == 0 else "5732",
                "country": country,
                "channel": "pos" if j % 2 == 0 else "ecom",
                "event_ts": START_TS + (i % 86_400) + j * 600.0,
            }
        )


def account_state(scenario: RiskScenario, i: int) -> Any:
    state = scenario.initial_state()
    for raw in transactions(i):
        state = scenario.update(state, scenario.parse(raw))
    return state


def changelog_records(scenario: RiskScenario, topic: str, keys: int) -> Iterator[tuple[str, bytes, bytes]]:
    """(topic, key, value) of every account: exactly what the worker writes for the account."""
    for i in range(keys):
        yield topic, account_id(i).encode(), dumps(scenario.state_to_dict(account_state(scenario, i)))


# --- the worker --------------------------------------------------------------------------------


def entities_changelog(s: Settings) -> str:
    """Faust's name for the `entities` table's changelog (checked to exist after the baseline run)."""
    return f"{s.app_id}-entities-changelog"


def state_dir(s: Settings) -> Path:
    return s.data_dir / "worker-0"


def start_worker(s: Settings, log_file: Path) -> Any:
    """`agentstream worker --loglevel info` (for Faust's recovery lines), as perf/implementations.py
    starts ours otherwise."""
    env = {**os.environ, **worker_env(s), "AGENTSTREAM_DATA_DIR": str(state_dir(s))}
    return spawn([sys.executable, "-m", "streams.cli", "worker", "--loglevel", "info"], env, log_file)


def dir_mb(path: Path) -> float:
    if not path.exists():
        return 0.0
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 1)


def faust_recovery(log_text: str) -> tuple[float | None, float | None]:
    """Epoch times of Faust's first "Restoring state" and last "Recovery complete" log lines."""
    from datetime import datetime

    begin = end = None
    for line in log_text.splitlines():
        m = FAUST_LINE.match(line)
        if m is None:
            continue
        ts = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if m.group(2) == "Restoring state" and begin is None:
            begin = ts
        elif m.group(2) == "Recovery complete":
            end = ts
    return begin, end


def run_once(
    s: Settings,
    case: str,
    cfg: RestoreConfig,
    logs: Path,
    log: Callable[[str], None],
    during: Callable[[], None] | None = None,
) -> RunResult:
    """Start the worker, wait until ready, run `during`, stop it cleanly; times and checks."""
    marker = next(state_dir(s).rglob("clean-shutdown"), None) if state_dir(s).exists() else None
    notes = []
    if case == "intact" and marker is None:
        notes.append("no clean-shutdown marker: the worker will drop its tables (not an intact restore)")
    size = dir_mb(state_dir(s))
    log_file = logs / f"worker-{case}-{time.strftime('%H%M%S')}.log"
    load = os.getloadavg()
    t0, wall0 = time.monotonic(), time.time()
    proc = start_worker(s, log_file)
    sampler = TreeSampler([proc.pid], interval_s=0.5)
    sampler.start()
    ready = None
    try:
        deadline = t0 + cfg.ready_timeout_s
        while time.monotonic() < deadline:
            if workers_ready(s, [proc]):
                ready = time.monotonic() - t0
                break
            time.sleep(0.1)
        if ready is None:
            notes.append(f"not ready within {cfg.ready_timeout_s:g}s")
        log(
            f"{case:>7}: ready after {ready if ready is not None else float('nan'):.1f}s "
            f"(Faust's recovery lines: see the result), state dir before {size:,.0f} MB, "
            f"load {load[0]:.2f}"
        )
        if ready is not None and during is not None:
            during()
    finally:
        t_stop = time.monotonic()
        code = stop(proc, signal.SIGTERM, timeout_s=cfg.stop_timeout_s)
        stop_s = time.monotonic() - t_stop
        sampler.stop()
    begin, end = faust_recovery(log_file.read_text(errors="replace"))
    clean = code == 0 and next(state_dir(s).rglob("clean-shutdown"), None) is not None
    if not clean:
        notes.append(f"unclean stop (exit code {code})")
    return RunResult(
        case=case,
        ready_s=round(ready, 2) if ready is not None else None,
        faust_recovery_s=round(end - begin, 2) if begin and end and end >= begin else None,
        faust_restoring_at_s=round(begin - wall0, 2) if begin else None,
        peak_rss_mb=round(sampler.peak_rss_bytes / 2**20, 1),
        load_before=tuple(round(x, 2) for x in load),  # type: ignore[arg-type]
        clean_stop=clean,
        stop_s=round(stop_s, 2),
        state_dir_mb=size,
        notes=notes,
    )


# --- verification ------------------------------------------------------------------------------


def check_rocksdb(
    s: Settings, scenario: RiskScenario, cfg: RestoreConfig, skip: set[int]
) -> tuple[int, int, int]:
    """(keys in the worker's entities partitions, sampled keys that hold the produced bytes, sampled)."""
    from rocksdict import AccessType, Options, Rdict

    paths = sorted(state_dir(s).rglob("entities-*.db"))
    if not paths:
        raise RuntimeError(f"no entities-*.db under {state_dir(s)}")
    dbs = [Rdict(str(p), options=Options(raw_mode=True), access_type=AccessType.read_only()) for p in paths]
    try:
        count = 0
        for db in dbs:
            count += sum(1 for key in db.keys() if key != OFFSET_KEY)  # noqa: SIM118 (not a dict)
        rng = random.Random(cfg.seed)
        sample = [i for i in rng.sample(range(cfg.keys), min(cfg.sample, cfg.keys)) if i not in skip]
        ok = 0
        for i in sample:
            key = account_id(i).encode()
            want = dumps(scenario.state_to_dict(account_state(scenario, i)))
            got = next((v for db in dbs if (v := db.get(key)) is not None), None)
            ok += got == want
        return count, ok, len(sample)
    finally:
        for db in dbs:
            db.close()


def probe_live(s: Settings, scenario: RiskScenario, accounts: list[int], timeout_s: float = 120.0) -> int:
    """Publish one transaction per restored account (at a terminal it used, 10 min after its last
    one) and check that its action's features are those of the restored history. Returns the
    number that matched."""
    from confluent_kafka import Producer

    from perf.readback import OutputWatch

    topics = s.topics()
    watch = OutputWatch(s, topics.actions)
    expected: dict[str, dict[str, float]] = {}
    try:
        producer = Producer(s.producer_config(partitioner="murmur2_random", log_level=3))
        for i in accounts:
            state = account_state(scenario, i)
            last = orjson.loads(list(transactions(i))[-1])
            tx = {**last, "transaction_id": f"probe-{account_id(i)}", "event_ts": state.last_ts + 600.0}
            raw = orjson.dumps(tx)
            expected[tx["transaction_id"]] = scenario.observe(state, scenario.parse(raw)).features
            producer.produce(topics.events, key=account_id(i), value=raw)
        producer.flush(30)
        if not watch.wait(len(accounts), timeout_s):
            raise RuntimeError(f"only {watch.count()} of {len(accounts)} probe actions")
        ok = 0
        for record in watch.read(values=True):
            action = orjson.loads(record.value)
            want = expected.get(action["event_id"])
            names = ("mean", "std", "distinct_terminals", "new_terminal", "secs_since_last", "count_1h")
            if want is not None and all(
                abs(action["features"][n] - want[n]) <= 1e-9 * max(1.0, abs(want[n])) for n in names
            ):
                ok += 1
        return ok
    finally:
        watch.close()


# --- the run -----------------------------------------------------------------------------------


def produce_states(
    s: Settings, scenario: RiskScenario, changelog: str, keys: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Produce every account's state to the changelog (the producer is gone when this returns)."""
    from connectors.admin import end_offsets
    from connectors.publish import Publisher

    log(f"producing {keys:,} account states to {changelog} ...")
    t0 = time.monotonic()
    sent = Publisher(s, **{"compression.type": "none"}).publish(changelog_records(scenario, changelog, keys))
    offsets = end_offsets(s, changelog)
    produced = {
        "records": sent.sent,
        "seconds": round(time.monotonic() - t0, 1),
        "per_partition": {p: high - low for p, (low, high) in sorted(offsets.items())},
        "value_bytes_example": len(dumps(scenario.state_to_dict(account_state(scenario, 4)))),
    }
    log(f"produced {sent.sent:,} records in {produced['seconds']}s: {produced['per_partition']}")
    return produced


def run_restore(settings: Settings, cfg: RestoreConfig, log: Callable[[str], None]) -> dict[str, Any]:
    from connectors.admin import end_offsets

    run = uuid.uuid4().hex[:6]
    workdir = Path(tempfile.mkdtemp(prefix="agentstream-restore-"))
    logs = workdir / "logs"
    logs.mkdir()
    scenario = RiskScenario()
    results: list[RunResult] = []
    produce: dict[str, Any] = {}
    try:
        with kafka_cluster(settings, log=log) as bootstrap:
            s = settings.with_overrides(
                bootstrap_servers=bootstrap,
                scenario="risk",
                app_id=f"restore-{run}",
                topic_prefix=f"restore{run}-",
                partitions=cfg.partitions,
                data_dir=workdir,
                metrics_dir=str(workdir / "metrics"),
                web_port=free_port(),
            )
            results.append(run_once(s, "empty", cfg, logs, log))
            changelog = entities_changelog(s)
            if not end_offsets(s, changelog):
                raise RuntimeError(f"the worker did not create {changelog}")
            shutil.rmtree(state_dir(s))
            produce = produce_states(s, scenario, changelog, cfg.keys, log)
            probe_accounts = random.Random(cfg.seed + 1).sample(range(cfg.keys), cfg.probes)
            cases = [c for _ in range(cfg.repeats) for c in ("deleted", "intact")]
            for k, case in enumerate(cases):
                if case == "deleted":
                    shutil.rmtree(state_dir(s), ignore_errors=True)
                last = k == len(cases) - 1
                probed: list[int] = []

                def probe(last: bool = last, probed: list[int] = probed) -> None:
                    if last and cfg.probes:
                        probed.append(probe_live(s, scenario, probe_accounts))

                result = run_once(s, case, cfg, logs, log, during=probe)
                if probed:
                    result.probes_ok, result.probes_checked = probed[0], len(probe_accounts)
                skip = set(probe_accounts) if probed else set()
                count, ok, checked = check_rocksdb(s, scenario, cfg, skip)
                result.keys_in_rocksdb, result.sample_ok, result.sample_checked = count, ok, checked
                log(
                    f"{case:>7}: RocksDB holds {count:,} keys; {ok}/{checked} sampled states exact"
                    + (f"; probes {result.probes_ok}/{result.probes_checked} matched" if probed else "")
                )
                results.append(result)
    finally:
        if cfg.keep_workdir:
            log(f"logs and state kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return summary(cfg, results, produce)


def summary(cfg: RestoreConfig, results: list[RunResult], produce: dict[str, Any]) -> dict[str, Any]:
    def times(case: str) -> list[float]:
        return [r.ready_s for r in results if r.case == case and r.ready_s is not None]

    keys_ok = all(r.keys_in_rocksdb == cfg.keys for r in results if r.case != "empty")
    samples_ok = all(r.sample_ok == r.sample_checked for r in results if r.case != "empty")
    probes_ok = all(r.probes_ok == r.probes_checked for r in results if r.probes_checked)
    return {
        "keys": cfg.keys,
        "ready_s": {case: times(case) for case in ("empty", "deleted", "intact")},
        "verified": keys_ok and samples_ok and probes_ok and all(r.clean_stop for r in results),
        "produce": produce,
        "runs": [asdict(r) for r in results],
        "config": asdict(cfg),
        "machine": machine(),
    }


def main(argv: list[str] | None = None) -> int:
    d = RestoreConfig()
    p = argparse.ArgumentParser(prog="python -m perf.restore", description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=d.keys, help="accounts in the entities table (1,000,000)")
    p.add_argument("--partitions", type=int, default=d.partitions)
    p.add_argument("--repeats", type=int, default=d.repeats, help="deleted + intact pairs (1)")
    p.add_argument("--sample", type=int, default=d.sample, help="RocksDB keys compared after each run")
    p.add_argument(
        "--probes", type=int, default=d.probes, help="live transactions checked after the last run"
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--ready-timeout", type=float, default=d.ready_timeout_s)
    p.add_argument("--out", type=Path, default=Path("perf/results"), help="the JSON result goes here")
    p.add_argument("--keep-workdir", action="store_true")
    a = p.parse_args(argv)
    cfg = RestoreConfig(
        keys=a.keys,
        partitions=a.partitions,
        repeats=a.repeats,
        sample=a.sample,
        probes=a.probes,
        seed=a.seed,
        ready_timeout_s=a.ready_timeout,
        keep_workdir=a.keep_workdir,
    )
    signal.signal(signal.SIGTERM, _interrupt)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        result = run_restore(load_settings(), cfg, log)
    except KeyboardInterrupt:
        log("interrupted: the worker and the broker were stopped")
        return 130
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"restore-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    log(f"ready times (s): {result['ready_s']}; verified: {result['verified']}; wrote {path}")
    print(orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS).decode())
    return 0 if result["verified"] else 1


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
