"""How well queueing theory predicts the measured latency sweep.

One worker is one server, so the model is M/M/1 (`streams.core.queueing.mm1`) with lambda = the
offered rate of a level and mu = ours' measured maximum throughput. Two predictions per level:
- pure M/M/1: W = 1/(mu - lambda), L = lambda W;
- M/M/1 + a fixed delay D0: the decide path has a latency floor that is not queueing (the sender's
  linger, the consumer's fetch, the batch window, the producer's linger and the broker's acks).
  D0 is calibrated at the lowest level (D0 = measured W - M/M/1 W there, so that level fits by
  construction) and the other levels test the queueing part.
Measured: W = mean latency, L = time-average events in flight (measured directly), and lambda W
(Little's law from the measured quantities, to check that L and W are consistent).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from perf.latency import LevelResult
from streams.core.queueing import mm1


@dataclass
class ModelRow:
    level: float
    lam: float
    rho: float
    w_measured_ms: float
    w_mm1_ms: float | None
    w_floor_ms: float | None  # M/M/1 + D0
    l_measured: float
    l_little: float  # lambda x measured W
    l_mm1: float | None
    l_floor: float | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _mm1_w(lam: float, mu: float) -> float | None:
    try:
        return mm1(lam, mu).w
    except ValueError:  # rho >= 1: no steady state
        return None


def compare(levels: list[LevelResult], mu: float) -> dict[str, object]:
    usable = [lv for lv in levels if lv.events and lv.error is None]
    if not usable or mu <= 0:
        return {"mu": mu, "rows": [], "note": "no latency levels to compare"}
    base = min(usable, key=lambda lv: lv.rate)
    base_w = _mm1_w(base.rate, mu) or 0.0
    d0 = base.mean_ms / 1000.0 - base_w
    rows = []
    for lv in usable:
        w = _mm1_w(lv.rate, mu)
        rows.append(
            ModelRow(
                level=lv.level,
                lam=lv.rate,
                rho=round(lv.rate / mu, 3),
                w_measured_ms=lv.mean_ms,
                w_mm1_ms=_ms(w),
                w_floor_ms=_ms(None if w is None else w + d0),
                l_measured=lv.in_flight,
                l_little=round(lv.measured_rate * lv.mean_ms / 1000.0, 3),
                l_mm1=None if w is None else round(lv.rate * w, 4),
                l_floor=None if w is None else round(lv.rate * (w + d0), 3),
            )
        )
    return {
        "mu": mu,
        "d0_ms": round(d0 * 1000.0, 3),
        "rows": [r.to_dict() for r in rows],
        "error_w_mm1": _mape([(r.w_mm1_ms, r.w_measured_ms) for r in rows]),
        "error_w_floor": _mape([(r.w_floor_ms, r.w_measured_ms) for r in rows if r.lam != base.rate]),
        "error_l_floor": _mape([(r.l_floor, r.l_measured) for r in rows if r.lam != base.rate]),
        "error_little": _mape([(r.l_little, r.l_measured) for r in rows]),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _mape(pairs: list[tuple[float | None, float]]) -> float | None:
    """Mean absolute relative error of predictions against measurements (unstable levels skipped)."""
    errors = [abs(pred - meas) / meas for pred, meas in pairs if pred is not None and meas > 0]
    return round(sum(errors) / len(errors), 4) if errors else None
