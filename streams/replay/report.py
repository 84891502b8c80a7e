"""The replay report: per-policy cost, decision mix, precision/recall, agreement with live, OPE.

Computed once from the engine's per-event arrays, so the loop itself keeps no statistics beyond
counts. The JSON form is deterministic (fixed key order, rounded derived ratios): the same input
and seed give byte-identical reports. A decision whose label never came counts as legit, the
scenario's no-feedback rule, as in `streams.quality`.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from itertools import accumulate
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from streams.replay.engine import LIVE, PolicyRun, ReplayResult
from streams.replay.ope import LoggedData, evaluate

SERIES_POINTS = 200
DIGITS = 6


def _ratio(num: int | float, den: int | float) -> float | None:
    return round(num / den, DIGITS) if den else None


def _precision_recall(
    actions: bytes, positive: bytes, chosen: set[int], total_positive: int
) -> dict[str, float | int | None]:
    """Precision and recall of 'chosen actions' as a detector of positive outcomes (fraud)."""
    if len(actions) != len(positive):
        raise ValueError("one outcome per action expected")
    flags = np.isin(np.frombuffer(actions, dtype=np.uint8), sorted(chosen))
    flagged = int(np.count_nonzero(flags))
    hits = int(np.frombuffer(positive, dtype=np.uint8)[flags].sum(dtype=np.int64))
    return {"flagged": flagged, "caught": hits, "precision": _ratio(hits, flagged),
            "recall": _ratio(hits, total_positive)}  # fmt: skip


def _series(event_ts: Any, rewards: Any, points: int = SERIES_POINTS) -> list[list[float]]:
    """Cumulative reward at `points` evenly spaced event times (events are in event-time order)."""
    n = len(event_ts)
    if n == 0:
        return []
    cumulative = list(accumulate(rewards))
    first, last = event_ts[0], event_ts[n - 1]
    span = last - first
    out = []
    for k in range(1, points + 1):
        t = first + span * k / points
        i = bisect_right(event_ts, t) if k < points else n
        out.append([round(t, 3), round(cumulative[i - 1], 4) if i else 0.0])
    return out


def policy_summary(run: PolicyRun, result: ReplayResult, live: PolicyRun | None) -> dict[str, Any]:
    names = result.actions
    acts, positive = run.actions.tobytes(), bytes(result.positive)  # action indices as bytes
    if run.label == LIVE:  # only the events live decided (-1: none)
        keep = [i for i, a in enumerate(run.actions) if a >= 0]
        acts = bytes(acts[i] for i in keep)
        positive = bytes(positive[i] for i in keep)
    events = sum(run.counts)
    reward = math.fsum(run.rewards)
    index = {name: i for i, name in enumerate(names)}
    total_positive = sum(positive)
    out: dict[str, Any] = {
        "events": events,
        "decisions": {name: run.counts[i] for i, name in enumerate(names)},
        "reward": round(reward, 4),
        "cost": round(-reward, 4),
        "cost_per_1k": round(-1000.0 * reward / events, 4) if events else None,
    }
    if "approve" in index:
        out["approve_rate"] = _ratio(run.counts[index["approve"]], events)
    if "decline" in index:
        declines = {index["decline"]}
        out["positives"] = total_positive
        out["decline"] = _precision_recall(acts, positive, declines, total_positive)
        if "review" in index:
            flagged = declines | {index["review"]}
            out["review_or_decline"] = _precision_recall(acts, positive, flagged, total_positive)
    if live is not None and run.label != LIVE:
        out["agreement"] = agreement(run, live)
    out["series"] = _series(result.event_ts, run.rewards)
    return out


def agreement(run: PolicyRun, live: PolicyRun) -> dict[str, Any]:
    mine, logged = np.frombuffer(run.actions, dtype=np.int8), np.frombuffer(live.actions, dtype=np.int8)
    compared = int(np.count_nonzero(logged >= 0))
    matched = int(np.count_nonzero((mine == logged) & (logged >= 0)))
    return {"compared": compared, "matched": matched, "rate": _ratio(matched, compared)}


def ope_section(result: ReplayResult, *, method: str = "normal", seed: int = 0) -> dict[str, Any] | None:
    """IPS / SNIPS / DR of each replayed policy from the live log, next to its replayed value.

    The estimators assume the target's randomness is independent of the logging policy's. A replay
    without --seed uses live's own draws (Draw(decision_id)) to reproduce it, which couples a
    stochastic target (qtable, softmax) to a stochastic live policy: salt the target's draws with
    --seed when estimating such a pair. Deterministic targets (rules, epsilon 0) are unaffected.
    """
    live = result.live
    if live is None:
        return None
    idx = np.flatnonzero(np.frombuffer(live.actions, dtype=np.int8) >= 0)
    if not len(idx):
        return None
    keys = itemgetter(*idx.tolist())(result.live_keys) if len(idx) > 1 else [result.live_keys[idx[0]]]
    code = {key: i for i, key in enumerate(sorted(set(keys)))}  # state keys as the model's row numbers
    log = LoggedData(
        contexts=np.fromiter(map(code.__getitem__, keys), np.int64, len(idx)),
        actions=np.frombuffer(live.actions, dtype=np.int8)[idx],
        propensities=np.frombuffer(live.probs)[idx],
        rewards=np.frombuffer(live.rewards)[idx],
    )
    n = len(idx)
    out: dict[str, Any] = {
        "logged": n,
        "unit": "mean reward per decision",
        "live_value": round(math.fsum(log.rewards.tolist()) / n, DIGITS),
    }
    for run in result.runs:
        target = np.frombuffer(run.actions, dtype=np.int8)[idx]
        estimates = evaluate(log, target, method=method, seed=seed)
        out[run.label] = {
            "replayed": round(math.fsum(np.frombuffer(run.rewards)[idx].tolist()) / n, DIGITS),
            **{name: est.to_dict(DIGITS) for name, est in estimates.items()},
        }
    return out


def build_report(result: ReplayResult, *, ope_method: str = "normal", seed: int = 0) -> dict[str, Any]:
    """The whole report: one key per policy (plus `live` when the live actions were given), `input`
    with what was read, and `ope` when the live actions carry propensities."""
    c = result.counters
    cfg = result.config
    report: dict[str, Any] = {}
    for run in result.runs:
        report[run.label] = policy_summary(run, result, result.live)
    if result.live is not None:
        report[LIVE] = policy_summary(result.live, result, None)
    ope = ope_section(result, method=ope_method, seed=seed)
    if ope is not None:
        report["ope"] = ope
    report["input"] = {
        "events": result.events,
        "first_event_ts": result.event_ts[0] if result.events else None,
        "last_event_ts": result.event_ts[result.events - 1] if result.events else None,
        "positives": sum(result.positive),
        "invalid": dict(sorted(result.invalid.items())),
        "feedback": {k.removeprefix("feedback_"): c[k] for k in sorted(c) if k.startswith("feedback_")},
        "expired": c["expired"],
        "pending_at_end": c["pending_at_end"],
        "learning": cfg.learning,
        "alpha": cfg.alpha,
        "gamma": cfg.gamma,
        "seed": cfg.seed,
    }
    return report


def to_json(report: dict[str, Any]) -> bytes:
    return orjson.dumps(report)


def comparison_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per policy (and live) for the table: the columns people compare policies by."""
    rows = []
    for label, s in report.items():
        if label in {"input", "ope"}:
            continue
        decline = s.get("decline") or {}
        flagged = s.get("review_or_decline") or {}
        rows.append({
            "policy": label,
            "events": s["events"],
            "cost_per_1k": s["cost_per_1k"],
            "reward": s["reward"],
            "approve_rate": s.get("approve_rate"),
            "decline_precision": decline.get("precision"),
            "decline_recall": decline.get("recall"),
            "flag_precision": flagged.get("precision"),
            "flag_recall": flagged.get("recall"),
            "agreement": (s.get("agreement") or {}).get("rate"),
        })  # fmt: skip
    return rows
