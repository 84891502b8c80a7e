"""Risk records as columns: what the columnar replay (`fastpath.py`) reads instead of timeline items.

Two ways in, one result. A JSONL file is read in chunks: the lines that are exactly the generator's
shape (`template.py`) are decoded all at once, their string values checked once per distinct
value with the parser's own checks (`string_field_ok`) and their numbers with its range checks;
every other line takes the per-record path: `record_of_line` and the scenario's `parse`, exactly
as `read_jsonl` + `build_timeline` handle it (so malformed records are counted with the same
reasons, and a line that is no record at all is the same SourceError). Records from Kafka (or
tests) take the per-record path only.
"""

from __future__ import annotations

import mmap
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain, compress
from pathlib import Path
from typing import Any

import numpy as np

from streams.core.columnar import Vocab
from streams.replay.sources import TOPIC_SIM_TS, EnvelopeLines, SourceError, record_of_line
from streams.replay.template import BOOL, NUM, STR, Chunk, LineTemplate, Matched, match
from streams.replay.timeline import EVENT, RawRecord, parse_records
from streams.scenarios.risk import (
    LABEL_FIELDS,
    TX_FIELDS,
    Label,
    RiskScenario,
    Transaction,
    amounts_ok,
    string_field_ok,
    timestamps_ok,
)

Buffer = Any  # bytes or a read-only mmap: anything with the buffer protocol, find() and slicing
_KINDS = {"amount": NUM, "event_ts": NUM, "is_fraud": BOOL, "label_ts": NUM}
_EVENT_FIELDS = tuple((n, _KINDS.get(n, STR)) for n in TX_FIELDS)
_LABEL_FIELDS = tuple((n, _KINDS.get(n, STR)) for n in LABEL_FIELDS)
EVENT_LINE = LineTemplate.envelope("event", _EVENT_FIELDS)
LABEL_LINE = LineTemplate.envelope("feedback", _LABEL_FIELDS)
CHUNK_BYTES = 4 << 20  # temporaries stay small enough for the allocator to reuse


@dataclass(slots=True)
class RiskColumns:
    """Valid records, per kind in arrival order (`*_seq`: arrival number, which breaks time ties)."""

    ev_seq: np.ndarray
    ev_ts: np.ndarray
    ev_amount: np.ndarray
    ev_account: np.ndarray  # entity codes
    ev_terminal: np.ndarray
    ev_country: np.ndarray
    ev_ecom: np.ndarray
    ev_tid: list[bytes]
    lb_seq: np.ndarray
    lb_ts: np.ndarray
    lb_key: np.ndarray  # entity codes of the record keys (the feedback's partitioning key)
    lb_terminal: np.ndarray
    lb_fraud: np.ndarray
    lb_tid: list[bytes]
    entities: Vocab
    terminals: Vocab
    invalid: Counter[str]
    records: int


class _CodeTable:
    """One string field's values -> codes (-1: the parser rejects it), kept across chunks: each
    distinct value is decoded and checked once. Values of at most 8 bytes are looked up packed in
    an open-addressing hash table (a few vector operations per chunk; a binary search per value
    costs eight times more)."""

    _EMPTY = (1 << 64) - 1  # eight 0xff bytes: never a value of a plain ASCII line
    _UNKNOWN = -2

    def __init__(self, name: str, vocab: Vocab | None) -> None:
        self.name = name
        self.vocab = vocab if vocab is not None else Vocab()
        self.by_name: dict[str, int] = {}
        self._grow(10)

    def _grow(self, bits: int) -> None:
        old = [
            (int(k), int(c))
            for k, c in zip(getattr(self, "keys", ()), getattr(self, "values", ()), strict=True)
        ]
        self.bits, self.used = bits, 0
        self.keys = np.full(1 << bits, self._EMPTY, dtype=np.uint64)
        self.values = np.full(1 << bits, self._UNKNOWN, dtype=np.int64)
        for key, code in old:
            if key != self._EMPTY:
                self._insert(key, code)

    def _slot(self, packed: np.ndarray) -> np.ndarray:
        return ((packed * _GOLDEN) >> np.uint64(64 - self.bits)).astype(np.int64)

    def _insert(self, key: int, code: int) -> None:
        if 4 * (self.used + 1) > len(self.keys):
            self._grow(self.bits + 1)
        slot = ((key * int(_GOLDEN)) & self._EMPTY) >> (64 - self.bits)
        while int(self.keys[slot]) != self._EMPTY:
            slot = (slot + 1) & (len(self.keys) - 1)
        self.keys[slot], self.values[slot] = key, code
        self.used += 1

    def _find(self, packed: np.ndarray) -> np.ndarray:
        slot = self._slot(packed)
        out = np.full(len(packed), self._UNKNOWN, dtype=np.int64)
        pending = np.arange(len(packed))
        while len(pending):  # linear probing: almost every value is found in the first slot
            at = slot[pending]
            key = self.keys[at]
            hit = key == packed[pending]
            out[pending[hit]] = self.values[at[hit]]
            pending = pending[~hit & (key != np.uint64(self._EMPTY))]
            slot[pending] = (slot[pending] + 1) & (len(self.keys) - 1)
        return out

    def code(self, value: str) -> int:
        code = self.by_name.get(value)
        if code is None:
            ok = self.name == "key" or string_field_ok(self.name, value)
            code = self.by_name[value] = self.vocab.code(value) if ok else -1
        return code

    def lookup(self, m: Matched, buf: np.ndarray) -> np.ndarray:
        packed = m.packed(buf, self.name)
        if packed is None:  # long values: a unique per chunk
            names, inverse = m.codes(buf, self.name)
            return np.array([self.code(n) for n in names], dtype=np.int64)[inverse]
        codes = self._find(packed)
        new = codes == self._UNKNOWN
        if new.any():
            for key in np.unique(packed[new]).tolist():
                self._insert(key, self.code(key.to_bytes(8, "little").rstrip(b"\0").decode("ascii")))
            codes[new] = self._find(packed[new])
        return codes


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: multiply, keep the top bits


@dataclass(slots=True)
class _Builder:
    """Collects column chunks from both paths; `finish` concatenates them."""

    entities: Vocab = field(default_factory=Vocab)
    terminals: Vocab = field(default_factory=Vocab)
    countries: Vocab = field(default_factory=Vocab)
    channels: Vocab = field(default_factory=Vocab)
    invalid: Counter[str] = field(default_factory=Counter)
    ev: dict[str, list] = field(default_factory=dict)
    lb: dict[str, list] = field(default_factory=dict)
    records: int = 0
    tables: dict[str, _CodeTable] = field(default_factory=dict)

    def add(self, side: dict[str, list], **columns: object) -> None:
        for name, value in columns.items():
            side.setdefault(name, []).append(value)

    def add_items(self, items: Iterable[tuple]) -> None:
        """Timeline items from the per-record path (`parse_records`)."""
        ev: list[tuple[int, Transaction]] = []
        lb: list[tuple[int, float, str, Label]] = []
        for ts, kind, seq, item, key, _raw in items:
            if kind == EVENT:
                ev.append((seq, item))
            else:
                lb.append((seq, ts, key, item))
        if ev:
            self.add(
                self.ev,
                seq=np.array([s for s, _ in ev], dtype=np.int64),
                ts=np.array([t.event_ts for _, t in ev]),
                amount=np.array([t.amount for _, t in ev]),
                account=self.entities.codes_of([t.account_id for _, t in ev]),
                terminal=self.terminals.codes_of([t.terminal_id for _, t in ev]),
                country=self.countries.codes_of([t.country for _, t in ev]),
                ecom=np.array([t.channel == "ecom" for _, t in ev], dtype=bool),
                tid=[t.transaction_id.encode() for _, t in ev],
            )
        if lb:
            self.add(
                self.lb,
                seq=np.array([s for s, *_ in lb], dtype=np.int64),
                ts=np.array([ts for _, ts, _, _ in lb]),
                key=self.entities.codes_of([key for _, _, key, _ in lb]),
                terminal=self.terminals.codes_of([x.terminal_id for *_, x in lb]),
                fraud=np.array([x.is_fraud for *_, x in lb], dtype=bool),
                tid=[x.transaction_id.encode() for *_, x in lb],
            )

    def codes(
        self, m: Matched, buf: np.ndarray, name: str, vocab: Vocab | None, ok: np.ndarray
    ) -> np.ndarray:
        """Codes of a string column; `ok` loses the lines whose value the parser would reject."""
        table = self.tables.get(name)
        if table is None:
            table = self.tables[name] = _CodeTable(name, vocab)
        codes = table.lookup(m, buf)
        ok &= codes >= 0
        return codes

    def add_events(self, m: Matched, buf: np.ndarray, seq0: int) -> np.ndarray:
        """The matched event lines; returns the mask of those accepted (the rest go per record)."""
        ok = _ids_ok(m, buf, "transaction_id")
        account = self.codes(m, buf, "account_id", self.entities, ok)
        terminal = self.codes(m, buf, "terminal_id", self.terminals, ok)
        country = self.codes(m, buf, "country", self.countries, ok)
        for name in ("currency", "merchant_category"):
            self.codes(m, buf, name, None, ok)
        ecom = self.codes(m, buf, "channel", self.channels, ok) == self.channels.code("ecom")
        amount, ts = m.numbers["amount"], m.numbers["event_ts"]
        ok &= amounts_ok(amount) & timestamps_ok(ts)
        tids = m.strings(buf, "transaction_id")
        self.add(
            self.ev, seq=m.lines[ok] + seq0, ts=ts[ok], amount=amount[ok], account=account[ok],
            terminal=terminal[ok], country=country[ok], ecom=ecom[ok],
            tid=_kept(tids, ok),
        )  # fmt: skip
        return ok

    def add_labels(self, m: Matched, buf: np.ndarray, seq0: int) -> np.ndarray:
        start, end = m.spans["key"]
        ok = _ids_ok(m, buf, "transaction_id") & (end > start)  # an empty key: per record (NO_KEY)
        key = self.codes(m, buf, "key", self.entities, ok.copy())  # not validated, only required
        self.codes(m, buf, "account_id", None, ok)
        terminal = self.codes(m, buf, "terminal_id", self.terminals, ok)
        ts = m.numbers["label_ts"]
        ok &= timestamps_ok(ts)
        tids = m.strings(buf, "transaction_id")
        self.add(
            self.lb, seq=m.lines[ok] + seq0, ts=ts[ok], key=key[ok], terminal=terminal[ok],
            fraud=m.flag(buf, "is_fraud")[ok], tid=_kept(tids, ok),
        )  # fmt: skip
        return ok

    def finish(self) -> RiskColumns:
        ev, lb = _concat(self.ev, _EV_EMPTY), _concat(self.lb, _LB_EMPTY)
        return RiskColumns(
            ev["seq"], ev["ts"], ev["amount"], ev["account"], ev["terminal"], ev["country"], ev["ecom"],
            ev["tid"], lb["seq"], lb["ts"], lb["key"], lb["terminal"], lb["fraud"], lb["tid"],
            self.entities, self.terminals, self.invalid, self.records,
        )  # fmt: skip


_EV_EMPTY = {"seq": np.int64, "ts": np.float64, "amount": np.float64, "account": np.int64,
             "terminal": np.int64, "country": np.int64, "ecom": bool, "tid": None}  # fmt: skip
_LB_EMPTY = {"seq": np.int64, "ts": np.float64, "key": np.int64, "terminal": np.int64, "fraud": bool,
             "tid": None}  # fmt: skip


_EVENT_NUMBERS, _LABEL_NUMBERS = frozenset({"amount", "event_ts"}), frozenset({"label_ts"})
_TEMPLATES = (  # template, its columns, the numbers to decode, (record time, the event time it repeats)
    (EVENT_LINE, _Builder.add_events, _EVENT_NUMBERS, ("sim_ts", "event_ts")),
    (LABEL_LINE, _Builder.add_labels, _LABEL_NUMBERS, ("sim_ts", "label_ts")),
)
_TOPIC_TEMPLATES = (  # the lines `EnvelopeLines` writes: their record time is always TOPIC_SIM_TS
    (LineTemplate.envelope("event", _EVENT_FIELDS, TOPIC_SIM_TS), _Builder.add_events, _EVENT_NUMBERS, None),
    (
        LineTemplate.envelope("feedback", _LABEL_FIELDS, TOPIC_SIM_TS),
        _Builder.add_labels,
        _LABEL_NUMBERS,
        None,
    ),
)


def _concat(side: dict[str, list], empty: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, dtype in empty.items():
        parts = side.get(name, [])
        if dtype is None:
            out[name] = list(chain.from_iterable(parts))
        else:
            out[name] = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    return out


def _kept(values: list[bytes], ok: np.ndarray) -> list[bytes]:
    if ok.all():
        return values
    return list(compress(values, ok.tolist()))


def _ids_ok(m: Matched, buf: np.ndarray, name: str) -> np.ndarray:
    """Non-empty, at most 64 characters (the template's limit) and not blank (`_text`), per line (ids
    are unique): a value starting with a space is left to the parser (it may be all spaces)."""
    start, end = m.spans[name]
    return (end > start) & (buf[np.minimum(start, len(buf) - 1)] != ord(" "))


def columns_from_records(
    scenario: RiskScenario, records: Iterable[RawRecord], progress: Callable[[int], None] | None = None
) -> RiskColumns:
    """The per-record path only (records from Kafka or tests)."""
    builder = _Builder()
    records = list(records)
    builder.add_items(parse_records(scenario, records, builder.invalid, progress))
    builder.records = len(records)
    return builder.finish()


def map_file(path: str | Path) -> Buffer:
    """The file's bytes, mapped read-only and populated in one call: no copy, no fault per page."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"no such file: {path}")
    with path.open("rb") as fh:
        if not os.fstat(fh.fileno()).st_size:
            return b""
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        return mmap.mmap(fh.fileno(), 0, flags=flags, prot=mmap.PROT_READ)


def count_lines(data: Buffer) -> int:
    """Lines in `data`, a last one without a newline included (counted a slice at a time: a
    temporary as large as the file would cost more than the count)."""
    step, size = 1 << 22, len(data)
    lines = sum(
        int(
            np.count_nonzero(np.frombuffer(data, dtype=np.uint8, count=min(step, size - at), offset=at) == 10)
        )
        for at in range(0, size, step)
    )
    return lines + (1 if size and data[-1:] != b"\n" else 0)


def read_columns(
    scenario: RiskScenario,
    path: str | Path,
    progress: Callable[[int], None] | None = None,
    data: Buffer | None = None,
) -> RiskColumns:
    """A JSONL file (or its bytes, `data`) as columns; `progress(n)`: lines read so far."""
    path = Path(path)
    if data is None:
        data = map_file(path)
    reader = _LineReader(scenario)
    view = memoryview(data)
    for begin, end in _chunks(data):
        chunk = Chunk.of(view, begin, end)
        line0 = reader.line0

        def record_at(i: int, line: bytes, line0: int = line0) -> RawRecord | None:
            return record_of_line(line, line0 + i + 1, path)

        reader.add(chunk, record_at)
        if progress is not None:
            progress(reader.line0)
    return reader.builder.finish()


def columns_from_lines(
    scenario: RiskScenario, batches: Iterable[EnvelopeLines], progress: Callable[[int], None] | None = None
) -> RiskColumns:
    """Topic records as JSONL lines (`EnvelopeLines`) as columns; `progress(n)`: lines read so far."""
    reader = _LineReader(scenario, _TOPIC_TEMPLATES)
    for lines in batches:
        reader.add(Chunk.of(memoryview(lines.data), 0, len(lines.data)), lines.record)
        if progress is not None:
            progress(reader.line0)
    return reader.builder.finish()


class _LineReader:
    """Chunks of lines into a `_Builder`: template lines at once, the others one record each."""

    def __init__(self, scenario: RiskScenario, templates: tuple = _TEMPLATES) -> None:
        self.scenario, self.templates = scenario, templates
        self.builder = _Builder()
        self.template_ok = scenario.clock is None  # with a clock, timestamps are checked against it
        self.line0 = 0  # lines before the chunk: its arrival numbers start there

    def add(self, chunk: Chunk, record_at: Callable[[int, bytes], RawRecord | None]) -> None:
        """`record_at(i, line)`: line i of the chunk (its text, without the newline) as a record."""
        builder, line0 = self.builder, self.line0
        taken = np.zeros(len(chunk.starts), dtype=bool)
        if self.template_ok:
            for template, add, numbers, same in self.templates:
                m = match(template, chunk, numbers, same)
                taken[m.lines[add(builder, m, chunk.buf, line0)]] = True
        records, seqs = [], []
        starts, ends = chunk.starts, chunk.ends
        for i in np.flatnonzero(~taken).tolist():
            record = record_at(i, chunk.buf[starts[i] : ends[i]].tobytes())
            if record is not None:
                records.append(record)
                seqs.append(line0 + i)
        builder.add_items(parse_records(self.scenario, records, builder.invalid, None, seqs))
        builder.records += int(taken.sum()) + len(records)
        self.line0 += len(chunk.starts)


def _chunks(data: Buffer) -> list[tuple[int, int]]:
    """Byte ranges of about CHUNK_BYTES, each ending after a newline (or at the end)."""
    out, begin = [], 0
    while begin < len(data):
        end = data.find(b"\n", min(begin + CHUNK_BYTES, len(data)) - 1)
        end = len(data) if end < 0 else end + 1
        out.append((begin, end))
        begin = end
    return out
