"""A deterministic synthetic card-transaction stream with delayed fraud labels.

Pure: it yields records and never talks to Kafka, so the publisher, the replay engine and the unit
tests share one generator. Everything comes from one `random.Random(seed)`: the same seed and
parameters give byte-identical output.

Legit spending follows per-customer profiles (home country, spend level, preferred terminals,
usual channels, activity). Three fraud patterns (after the "Fraud Detection Handbook" simulator)
give a learner something to find, each visible in a different feature of the risk scenario:

(a) large amounts on random customers, at terminals they never used  -> amount, z-score, new terminal
(b) compromised terminals: for a while a share of their transactions is fraud -> terminal risk
(c) compromised cards: a burst of tiny card-not-present foreign "card tests", then a few large
    spends                                                             -> velocity, cnp + foreign

Every transaction gets a label after a delay in simulated time (most within minutes, some hours
later, a few never). Events and labels come out merged in simulated-time order, so a publisher can
emit them as they are.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

import orjson

# Home countries with their population share; OVERSEAS countries only host merchants.
HOME_COUNTRIES = (
    ("US", "USD", 0.45),
    ("GB", "GBP", 0.15),
    ("DE", "EUR", 0.12),
    ("FR", "EUR", 0.10),
    ("CA", "CAD", 0.08),
    ("NL", "EUR", 0.05),
    ("ES", "EUR", 0.05),
)
HOME_CODES = frozenset(code for code, _, _ in HOME_COUNTRIES)
OVERSEAS = (("BR", "BRL"), ("MX", "MXN"), ("JP", "JPY"), ("AU", "AUD"), ("SG", "SGD"), ("ZA", "ZAR"))
CHANNEL_SHARE = (("pos", 0.70), ("ecom", 0.25), ("atm", 0.05))
MCCS = {
    "pos": ("5411", "5812", "5541", "5311", "5999", "5912"),
    "ecom": ("5732", "5691", "4814", "5815", "5999", "4722"),
    "atm": ("6011",),
}
REFERENCE_RATE = 50.0  # events per simulated second the fraud timings below are tuned for
TRAVEL_SHARE = 0.01  # legit card-present transactions abroad
CROSS_BORDER_ECOM = 0.08  # legit online purchases from foreign merchants
PREFERRED_SHARE = 0.92  # legit transactions at one of the customer's usual terminals
BIG_TICKET_SHARE = 0.015  # legit purchases far above the customer's usual spend
FRAUD_SPLIT = (0.30, 0.35, 0.35)  # share of frauds from patterns (a), (b), (c)
COMPROMISED_FRAUD_SHARE = 0.5  # of a compromised terminal's transactions
COMPROMISE_MINUTES = (15.0, 45.0)
CARD_TESTS = (5, 15)  # tiny transactions per compromised card
CARD_SPENDS = (1, 3)  # large transactions after the tests
LARGE_FRAUD_MEDIAN = 350.0  # pattern (a); spread wide enough to overlap big legit purchases
CARD_SPEND_MEDIAN = 400.0  # pattern (c) spends after the tests
MEAN_BURST = (CARD_TESTS[0] + CARD_TESTS[1] + CARD_SPENDS[0] + CARD_SPENDS[1]) / 2


@dataclass(slots=True)
class GeneratedRecord:
    """One record to publish: an event or a label, keyed by account, stamped in simulated time."""

    kind: str  # "event" | "feedback"
    key: str
    value: bytes
    sim_ts: float


@dataclass(slots=True)
class GeneratorStats:
    """What one run produced (filled as records are yielded); fraud_* split frauds by pattern."""

    events: int = 0
    frauds: int = 0
    labels: int = 0
    never_labelled: int = 0
    fraud_large: int = 0
    fraud_terminal: int = 0
    fraud_card: int = 0

    @property
    def fraud_rate(self) -> float:
        return self.frauds / self.events if self.events else 0.0


@dataclass(slots=True)
class _Customer:
    account_id: str
    home: str  # country code
    log_spend: float  # log of the median amount
    p_pos: float  # cumulative channel probabilities
    p_ecom: float
    preferred: dict[str, tuple[int, ...]] = field(default_factory=dict)  # channel -> terminal indices


def _pick(seq: tuple[int, ...] | list[int], random_: Callable[[], float]) -> int:
    """rng.choice without its rejection sampling: a third of the cost, as deterministic."""
    return seq[int(random_() * len(seq))]


# (terminal_id, country, currency, merchant_category, channel)
Terminal = tuple[str, str, str, str, str]
# A scheduled transaction: (customer, terminal index, amount, fraud pattern)
_Spec = tuple[_Customer, int, float, int]


class RiskGenerator:
    """Customers, terminals and fraud patterns; `records(n)` yields the merged stream.

    Events arrive as a Poisson process of `rate` per simulated second, shared by all customers in
    proportion to their activity, so one customer transacts about rate/customers per second (0.3
    a minute at the defaults): busier than a real cardholder, which keeps runs short. The risk
    scenario's velocity buckets are set for that; change rate/customers a lot and revisit them.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        customers: int = 10_000,
        terminals: int = 2_000,
        fraud_rate: float = 0.007,
        rate: float = REFERENCE_RATE,
        start_ts: float = 1_704_067_200.0,  # 2024-01-01T00:00:00Z
        label_delay_mean_s: float = 180.0,
        late_share: float = 0.05,
        late_delay_s: tuple[float, float] = (3_600.0, 6 * 3_600.0),
        never_share: float = 0.02,
    ) -> None:
        if customers < 1 or terminals < 1 or rate <= 0 or not 0 <= fraud_rate < 0.5:
            raise ValueError("customers, terminals and rate must be positive, fraud_rate in [0, 0.5)")
        self.seed = seed
        self.n_customers = customers
        self.n_terminals = terminals
        self.fraud_rate = fraud_rate
        self.rate = rate
        self.start_ts = start_ts
        self.label_delay_mean_s = label_delay_mean_s
        self.late_share = late_share
        self.late_delay_s = late_delay_s
        self.never_share = never_share
        self.stats = GeneratorStats()

    # --- the world -------------------------------------------------------------------------
    def _build(self, rng: random.Random) -> None:
        """Terminals first (customers pick their usual ones among them), then customers."""
        countries = [(c, cur) for c, cur, _ in HOME_COUNTRIES] + list(OVERSEAS)
        weights = [share * 0.9 for _, _, share in HOME_COUNTRIES] + [0.1 / len(OVERSEAS)] * len(OVERSEAS)
        terms: list[Terminal] = []
        by_place: dict[tuple[str, str], list[int]] = {}

        def add(country: str, currency: str, channel: str) -> None:
            by_place.setdefault((country, channel), []).append(len(terms))
            tid = f"T{len(terms):06d}"
            terms.append((tid, country, currency, rng.choice(MCCS[channel]), channel))

        for country, currency in countries:  # every place gets at least one terminal per channel
            for channel, _ in CHANNEL_SHARE:
                add(country, currency, channel)
        channels = [c for c, _ in CHANNEL_SHARE]
        channel_w = [w for _, w in CHANNEL_SHARE]
        for _ in range(max(0, self.n_terminals - len(terms))):
            country, currency = rng.choices(countries, weights)[0]
            add(country, currency, rng.choices(channels, channel_w)[0])
        self._terminals = terms
        self._by_place = {k: tuple(v) for k, v in by_place.items()}
        self._countries = [c for c, _ in countries]
        self._pos_home = [i for i, t in enumerate(terms) if t[4] == "pos" and t[1] in HOME_CODES]
        ecom = [i for i, t in enumerate(terms) if t[4] == "ecom"]
        self._testers = rng.sample(ecom, min(50, len(ecom)))  # weak merchants card testers favour

        home_w = list(accumulate(share for _, _, share in HOME_COUNTRIES))
        custs: list[_Customer] = []
        activity: list[float] = []
        for i in range(self.n_customers):
            code = HOME_COUNTRIES[bisect(home_w, rng.random() * home_w[-1])][0]
            ecom = min(0.6, max(0.05, rng.gauss(0.25, 0.1)))
            atm = min(0.2, max(0.0, rng.gauss(0.05, 0.03)))
            cust = _Customer(
                account_id=f"A{i:07d}",
                home=code,
                log_spend=math.log(35.0) + rng.gauss(0.0, 0.6),
                p_pos=1.0 - ecom - atm,
                p_ecom=1.0 - atm,
            )
            for channel, count in (("pos", rng.randint(1, 4)), ("ecom", rng.randint(1, 3)), ("atm", 1)):
                pool = self._by_place[code, channel]
                cust.preferred[channel] = tuple(rng.choice(pool) for _ in range(count))
            custs.append(cust)
            activity.append(math.exp(rng.gauss(0.0, 0.4)))
        self._customers = custs
        self._activity = list(accumulate(activity))

    # --- the stream -----------------------------------------------------------------------------
    def records(self, n_events: int) -> Iterator[GeneratedRecord]:
        """Yield n_events transactions and their labels, merged in simulated-time order.

        Each call starts the same world from the seed again; the labels still pending after the
        last event are drained at the end ("never" labels excepted).
        """
        rng = random.Random(self.seed)
        self._build(rng)
        return _Run(self, rng).run(n_events)


class _Run:
    """The mutable state of one pass over the stream (kept apart so `records` can be re-run)."""

    def __init__(self, gen: RiskGenerator, rng: random.Random) -> None:
        self.g = gen
        self.rng = rng
        self.stats = gen.stats = GeneratorStats()
        # Scheduled records: a heap of bare timestamps (float compares are cheap, tuples are not)
        # and the record due at each; a label is a ready GeneratedRecord, an event a _Spec.
        self.heap: list[float] = []
        self.due: dict[float, GeneratedRecord | _Spec] = {}
        self.count = 0
        self.prefix = f"t{gen.seed}-"
        self.terminals = gen._terminals
        self.customers = gen._customers
        self.activity = gen._activity
        self.total_activity = gen._activity[-1]
        self.never = gen.never_share
        self.late = gen.never_share + gen.late_share
        frac_a, frac_b, frac_c = (gen.fraud_rate * share for share in FRAUD_SPLIT)
        self.p_large = frac_a
        self.p_burst = frac_c / MEAN_BURST
        # Pattern (b): keep `concurrent` terminals compromised; each turns COMPROMISED_FRAUD_SHARE
        # of its traffic into fraud, so concurrent * traffic * share = the wanted fraud rate.
        self.scale = REFERENCE_RATE / gen.rate  # slower streams: longer compromises, same fraud count
        traffic = gen.rate * CHANNEL_SHARE[0][1] / max(1, len(gen._pos_home))
        concurrent = frac_b * gen.rate / (traffic * COMPROMISED_FRAUD_SHARE)
        lo, hi = COMPROMISE_MINUTES
        self.compromise_gap = 60.0 * (lo + hi) / 2 * self.scale / max(concurrent, 1e-9)
        self.compromised: dict[int, float] = {}
        self.next_compromise = gen.start_ts
        for _ in range(round(concurrent)):  # start in the steady state, not with a clean world
            self._compromise(gen.start_ts, remaining=True)

    def _compromise(self, now: float, remaining: bool = False) -> None:
        rng = self.rng
        lo, hi = COMPROMISE_MINUTES
        duration = 60.0 * rng.uniform(lo, hi) * self.scale
        if remaining:
            duration *= rng.random()
        self.compromised[rng.choice(self.g._pos_home)] = now + duration

    def _push(self, ts: float, item: GeneratedRecord | _Spec) -> None:
        due = self.due
        while ts in due:  # equal timestamps: the later-scheduled one goes 1 ulp later, deterministically
            ts = math.nextafter(ts, math.inf)
        due[ts] = item
        heapq.heappush(self.heap, ts)

    def _event(self, ts: float, cust: _Customer, term: int, amount: float, pattern: int) -> GeneratedRecord:
        """Render one transaction, count it, and schedule its label (pattern 0 = legit)."""
        rng, stats = self.rng, self.stats
        tid, country, currency, mcc, channel = self.terminals[term]
        txid = f"{self.prefix}{self.count:09d}"
        self.count += 1
        stats.events += 1
        if pattern:
            stats.frauds += 1
            if pattern == 1:
                stats.fraud_large += 1
            elif pattern == 2:
                stats.fraud_terminal += 1
            else:
                stats.fraud_card += 1
        value = orjson.dumps(
            {
                "transaction_id": txid,
                "account_id": cust.account_id,
                "terminal_id": tid,
                "amount": amount,
                "currency": currency,
                "merchant_category": mcc,
                "country": country,
                "channel": channel,
                "event_ts": ts,
            }
        )
        u = rng.random()
        if u < self.never:
            stats.never_labelled += 1
        else:
            if u < self.late:
                delay = rng.uniform(*self.g.late_delay_s)
            else:  # exponential, inlined: this line runs for almost every event
                delay = -math.log(1.0 - rng.random()) * self.g.label_delay_mean_s
            label_ts = ts + delay
            label = {
                "transaction_id": txid,
                "account_id": cust.account_id,
                "terminal_id": tid,
                "is_fraud": bool(pattern),
                "label_ts": label_ts,
            }
            self._push(label_ts, GeneratedRecord("feedback", cust.account_id, orjson.dumps(label), label_ts))
        return GeneratedRecord("event", cust.account_id, value, ts)

    def _card_burst(self, now: float) -> None:
        """Pattern (c): card tests at a known weak merchant abroad, then large spends abroad."""
        g, rng = self.g, self.rng
        cust = g._customers[rng.randrange(len(g._customers))]
        home = cust.home
        tester = rng.choice([t for t in g._testers if g._terminals[t][1] != home] or g._testers)
        ts = now
        for _ in range(rng.randint(*CARD_TESTS)):
            ts += rng.expovariate(1.0 / 8.0)
            self._push(ts, (cust, tester, round(rng.uniform(0.5, 5.0), 2), 3))
        for _ in range(rng.randint(*CARD_SPENDS)):
            ts += rng.expovariate(1.0 / 60.0)
            term = self._random_terminal(home, "ecom", foreign=True)
            amount = round(min(20_000.0, math.exp(rng.gauss(math.log(CARD_SPEND_MEDIAN), 0.7))), 2)
            self._push(ts, (cust, term, amount, 3))

    def _random_terminal(self, home: str, channel: str, foreign: bool) -> int:
        countries, random_ = self.g._countries, self.rng.random
        country = home
        while foreign and country == home:
            country = countries[int(random_() * len(countries))]
        return _pick(self.g._by_place[country, channel], random_)

    def _base(self, ts: float) -> GeneratedRecord:
        """One transaction of the steady stream: legit, pattern (a), or hit by pattern (b)."""
        rng = self.rng
        random_ = rng.random
        cust = self.customers[bisect(self.activity, random_() * self.total_activity)]
        home = cust.home
        if random_() < self.p_large:  # (a)
            channel = "ecom" if random_() < 0.6 else "pos"
            term = self._random_terminal(home, channel, foreign=random_() < 0.4)
            amount = min(20_000.0, math.exp(rng.gauss(math.log(LARGE_FRAUD_MEDIAN), 0.8)))
            return self._event(ts, cust, term, round(amount, 2), 1)
        u = random_()
        channel = "pos" if u < cust.p_pos else "ecom" if u < cust.p_ecom else "atm"
        if channel != "atm" and random_() < (TRAVEL_SHARE if channel == "pos" else CROSS_BORDER_ECOM):
            term = self._random_terminal(home, channel, foreign=True)
        elif random_() < PREFERRED_SHARE:
            prefs = cust.preferred[channel]
            term = prefs[int(random_() * len(prefs))]
        else:
            term = self._random_terminal(home, channel, foreign=False)
        amount = math.exp(cust.log_spend + rng.gauss(0.0, 0.7))
        if channel == "atm":
            amount = max(20.0, round(amount * 2.0 / 20.0) * 20.0)
        elif random_() < BIG_TICKET_SHARE:
            amount *= rng.uniform(5.0, 20.0)
        pattern = 0
        end = self.compromised.get(term)
        if end is not None:
            if ts > end:
                del self.compromised[term]
            elif random_() < COMPROMISED_FRAUD_SHARE:
                pattern = 2
                amount *= rng.uniform(1.5, 4.0)
        return self._event(ts, cust, term, round(max(0.01, amount), 2), pattern)

    def run(self, n_events: int) -> Iterator[GeneratedRecord]:
        g, rng, heap, due, stats = self.g, self.rng, self.heap, self.due, self.stats
        heappop = heapq.heappop
        log, random_ = math.log, rng.random
        mean_gap = 1.0 / g.rate
        t = g.start_ts
        while self.count < n_events:
            t -= log(1.0 - random_()) * mean_gap  # exponential inter-arrival, inlined (hot)
            while heap and heap[0] <= t:
                ts = heappop(heap)
                item = due.pop(ts)
                if type(item) is GeneratedRecord:
                    stats.labels += 1
                    yield item
                elif self.count < n_events:
                    yield self._event(ts, *item)  # type: ignore[misc]
            if self.count >= n_events:
                break
            if t >= self.next_compromise:
                self._compromise(t)
                self.next_compromise = t + rng.expovariate(1.0 / self.compromise_gap)
            if random_() < self.p_burst:
                self._card_burst(t)
            yield self._base(t)
        while heap:  # the stream ends: deliver the labels still pending, drop unstarted card bursts
            item = due.pop(heappop(heap))
            if type(item) is GeneratedRecord:
                stats.labels += 1
                yield item


def generate_to_jsonl(path: str | Path, n: int, seed: int = 0, **params: object) -> GeneratorStats:
    """Write n events and their labels as JSON lines {kind, key, sim_ts, value}; returns the stats."""
    gen = RiskGenerator(seed, **params)  # type: ignore[arg-type]
    with Path(path).open("wb") as out:
        for rec in gen.records(n):
            line = {
                "kind": rec.kind,
                "key": rec.key,
                "sim_ts": rec.sim_ts,
                "value": orjson.Fragment(rec.value),
            }
            out.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))
    return gen.stats
