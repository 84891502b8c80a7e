"""Reading many JSONL lines of one exact shape at once, with numpy, instead of one orjson call each.

`agentstream generate` writes every record as `{"kind":K,"key":"..","sim_ts":N,"value":{...}}` with
the value's fields in a fixed order. A `LineTemplate` is that shape: the literal text, and the
variables between it (strings, numbers, booleans). A line *matches* only if it is exactly the
template with plain ASCII strings (no escapes, no control characters), plain decimal numbers
(`123` or `123.45`, no sign, no exponent) and `true`/`false`: for such a line, decoding with orjson
would give exactly these strings, and these numbers (numpy's and orjson's conversions are both
correctly rounded). Anything else is reported as not matching and takes the per-record path, so
the template only has to be strict, never complete.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STR, NUM, BOOL = "str", "num", "bool"
_MARK = {STR: "\x01", NUM: "\x02", BOOL: "\x03"}
MAX_STR = 64  # longer strings are not matched (the scenario's own limit for ids)
MAX_NUM = 32
_QUOTE, _NEWLINE, _BACKSLASH = 34, 10, 92
_DIGIT0, _DIGIT9, _DOT = 48, 57, 46


@dataclass(frozen=True, slots=True)
class _Segment:
    """The text between two quotes: a literal, or `prefix <variable> suffix`."""

    prefix: bytes
    kind: str | None = None  # None: a literal
    suffix: bytes = b""


@dataclass(frozen=True, slots=True)
class LineTemplate:
    """One record shape: segments between the line's quotes, and the variables' names in order."""

    segments: tuple[_Segment, ...]
    names: tuple[str, ...]

    @classmethod
    def envelope(
        cls, kind: str, fields: tuple[tuple[str, str], ...], sim_ts: str | None = None
    ) -> LineTemplate:
        """The JSONL line `generate_to_jsonl` writes for a record whose value has these fields
        (`sim_ts`: the record time's literal text, if every line has the same)."""
        body = ",".join(f'"{name}":' + _quoted(kind_) for name, kind_ in fields)
        ts = _MARK[NUM] if sim_ts is None else sim_ts
        text = f'{{"kind":"{kind}","key":{_quoted(STR)},"sim_ts":{ts},"value":{{{body}}}}}'
        segments = []
        for part in text.split('"'):
            marks = [c for c in part if c in _MARK.values()]
            if not marks:
                segments.append(_Segment(part.encode()))
                continue
            mark = marks[0]
            prefix, suffix = part.split(mark)
            var = next(k for k, m in _MARK.items() if m == mark)
            segments.append(_Segment(prefix.encode(), var, suffix.encode()))
        names = ("key", *(("sim_ts",) if sim_ts is None else ()), *(name for name, _ in fields))
        return cls(tuple(segments), names)

    @property
    def quotes(self) -> int:
        return len(self.segments) - 1

    @property
    def runs(self) -> list[bytes]:
        """The literal text before each variable, and after the last: what `_literal_runs` checks."""
        text = b'"'.join(seg.prefix + (_MARK[seg.kind].encode() if seg.kind else b"") + seg.suffix
                         for seg in self.segments)  # fmt: skip
        for mark in _MARK.values():
            text = text.replace(mark.encode(), b"\x00")
        return text.split(b"\x00")


def _quoted(kind: str) -> str:
    return f'"{_MARK[STR]}"' if kind == STR else _MARK[kind]


@dataclass(slots=True)
class Matched:
    """The lines of a buffer that match a template, where each variable's text is, and the numbers."""

    lines: np.ndarray  # line numbers (within the buffer) of the matching lines
    spans: dict[str, tuple[np.ndarray, np.ndarray]]  # variable -> (start, end) byte offsets
    numbers: dict[str, np.ndarray]

    def flag(self, buf: np.ndarray, name: str) -> np.ndarray:
        start, _ = self.spans[name]
        return buf[start] == ord("t")

    def strings(self, buf: np.ndarray, name: str) -> list[bytes]:
        start, end = self.spans[name]
        return _gather(buf, start, end).view(f"S{_width(start, end)}").ravel().tolist()

    def packed(self, buf: np.ndarray, name: str) -> np.ndarray | None:
        """Each line's value as one uint64 (its bytes, zero-padded) if all are at most 8 bytes."""
        start, end = self.spans[name]
        if _width(start, end) > 8:
            return None
        return _words(buf)[start] & _LOW_BYTES[end - start]

    def codes(self, buf: np.ndarray, name: str) -> tuple[list[str], np.ndarray]:
        """(distinct values, index of each line's value among them)."""
        packed = self.packed(buf, name)
        if packed is not None:  # one integer per value: a much faster unique than on byte strings
            distinct, inverse = np.unique(packed, return_inverse=True)
            names = distinct.view("S8").tolist()
        else:
            start, end = self.spans[name]
            strings = _gather(buf, start, end).view(f"S{_width(start, end)}").ravel()
            distinct, inverse = np.unique(strings, return_inverse=True)
            names = distinct.tolist()
        return [n.decode("ascii") for n in names], inverse.ravel()


def _width(start: np.ndarray, end: np.ndarray) -> int:
    return max(int((end - start).max(initial=0)), 1)


def _words(buf: np.ndarray) -> np.ndarray:
    """The 8 bytes at every offset as one little-endian integer (an unaligned, overlapping view:
    reading 8 bytes at each of n positions is then a single gather)."""
    return np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))


def _rows(buf: np.ndarray, start: np.ndarray, width: int) -> np.ndarray:
    """A copy of the bytes at each start, `width` rounded up to whole words, as (n, 8k) bytes."""
    words = _words(buf)
    k = -(-width // 8)
    return np.stack([words[start + 8 * j] for j in range(k)], axis=1).view(np.uint8)


def _gather(buf: np.ndarray, start: np.ndarray, end: np.ndarray, width: int | None = None) -> np.ndarray:
    """Rows of `width` (at most the chunk's padding) bytes from each start, zero past each end
    (JSON text here holds no NULs)."""
    width = _width(start, end) if width is None else width
    out = np.ascontiguousarray(_rows(buf, start, width)[:, :width])
    out[np.arange(width) >= (end - start)[:, None]] = 0
    return out


def line_bounds(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of every line; a last line without a newline counts too."""
    ends = np.flatnonzero(buf == _NEWLINE)
    if len(buf) and buf[-1] != _NEWLINE:
        ends = np.append(ends, len(buf))
    starts = np.empty_like(ends)
    if len(ends):
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    return starts, ends


def plain_lines(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Lines with only printable ASCII and no backslash: their strings need no unescaping."""
    ok = np.ones(len(starts), dtype=bool)
    controls = np.count_nonzero(buf < 32)
    usual = buf.max(initial=0) <= 126 and controls == np.count_nonzero(buf == _NEWLINE)
    if usual and not np.count_nonzero(buf == _BACKSLASH):
        return ok  # the usual case: a few cheap passes instead of a position list
    odd = (buf < 32) | (buf > 126) | (buf == _BACKSLASH)
    at = np.flatnonzero(odd)
    at = at[buf[at] != _NEWLINE]
    ok[np.searchsorted(ends, at, side="left")] = False
    return ok


@dataclass(slots=True)
class Chunk:
    """A buffer of whole lines, padded so that reads a little past a line's end stay in bounds."""

    buf: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    plain: np.ndarray  # indices of the lines `plain_lines` accepts
    quotes: np.ndarray  # positions of every '"'
    first_quote: np.ndarray  # per plain line: index in `quotes` of its first quote
    quote_count: np.ndarray  # per plain line

    @classmethod
    def of(cls, data: memoryview, begin: int, end: int) -> Chunk:
        """Lines `data[begin:end]`; reads past `end` see the next bytes of `data` (masked off), so
        only a chunk less than the padding from the end of `data` is copied."""
        if end + _PAD <= len(data):
            buf = np.frombuffer(data, dtype=np.uint8, count=end + _PAD - begin, offset=begin)
        else:
            buf = np.zeros(end - begin + _PAD, dtype=np.uint8)
            buf[: end - begin] = np.frombuffer(data, dtype=np.uint8, count=end - begin, offset=begin)
        text = buf[: end - begin]
        starts, ends = line_bounds(text)
        plain = np.flatnonzero(plain_lines(text, starts, ends))
        quotes = np.flatnonzero(text == _QUOTE)
        first = np.searchsorted(quotes, starts)  # a line's quotes run up to the next line's first
        count = np.diff(first, append=len(quotes))
        return cls(buf, starts, ends, plain, quotes, first[plain], count[plain])


_PAD = 64
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)


def match(
    template: LineTemplate,
    chunk: Chunk,
    convert: frozenset[str] = frozenset(),
    same: tuple[str, str] | None = None,
) -> Matched:
    """The plain lines of `chunk` that are exactly `template`; the numbers named in `convert` are
    decoded (the others only checked). `same` = (a, b): number a is checked only where its text
    differs from number b's (b is checked anyway: the envelope's time is usually the event's)."""
    buf, starts, ends = chunk.buf, chunk.starts, chunk.ends
    mine = chunk.quote_count == template.quotes
    lines = chunk.plain[mine]
    first = chunk.first_quote[mine]
    ok = np.ones(len(lines), dtype=bool)
    spans: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    numbers: dict[str, np.ndarray] = {}
    names = iter(template.names)
    for j, seg in enumerate(template.segments):
        if seg.kind is None:
            continue
        start = starts[lines] if j == 0 else chunk.quotes[first + j - 1] + 1
        end = ends[lines] if j == template.quotes else chunk.quotes[first + j]
        inner_start, inner_end = start + len(seg.prefix), end - len(seg.suffix)
        name = next(names)
        spans[name] = (inner_start, inner_end)
        length = inner_end - inner_start
        ok &= length >= 0
        if seg.kind == STR:
            ok &= length <= MAX_STR
        elif seg.kind == BOOL:
            ok &= _booleans(buf, inner_start, inner_end)
        elif same is None or name != same[0]:
            fine, value = _numbers(buf, inner_start, inner_end, name in convert)
            ok &= fine
            if value is not None:
                numbers[name] = value
    if same is not None:
        (start, end), (other, other_end) = spans[same[0]], spans[same[1]]
        differ = np.flatnonzero(~_same_text(buf, start, end, other, other_end))
        ok[differ] &= _numbers(buf, start[differ], end[differ], False)[0]
    ok &= _literal_runs(template, buf, starts[lines], ends[lines], list(spans.values()))
    return Matched(
        lines[ok],
        {name: (s[ok], e[ok]) for name, (s, e) in spans.items()},
        {name: x[ok] for name, x in numbers.items()},
    )


def _same_text(
    buf: np.ndarray, start: np.ndarray, end: np.ndarray, other: np.ndarray, other_end: np.ndarray
) -> np.ndarray:
    """Whether two spans of at most MAX_NUM bytes hold the same text (compared a word at a time)."""
    words, length = _words(buf), end - start
    same = (length == other_end - other) & (length >= 0) & (length <= MAX_NUM)
    for j in range(0, min(_width(start, end), MAX_NUM), 8):
        mask = _LOW_BYTES[np.clip(length - j, 0, 8)]
        same &= (words[start + j] & mask) == (words[other + j] & mask)
    return same


def _literal_runs(
    template: LineTemplate,
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    spans: list[tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Whether the text around the variables is the template's, byte for byte: each run of literal
    text (line start or a variable's end, to the next variable or the line's end) has the run's
    length and bytes, compared eight bytes at a time (`_words`)."""
    ok = np.ones(len(starts), dtype=bool)
    words = _words(buf)
    edges = [starts] + [x for span in spans for x in span] + [ends]
    diff = np.zeros(len(starts), dtype=np.uint64)  # any bit set: some byte differs
    for text, begin, end in zip(template.runs, edges[0::2], edges[1::2], strict=True):
        ok &= (end - begin) == len(text)
        for j in range(0, len(text), 8):
            piece = text[j : j + 8]
            word = words[begin + j] if j else words[begin]
            if len(piece) < 8:  # the run's last bytes: ignore what follows it
                word &= np.uint64((1 << (8 * len(piece))) - 1)
            diff |= word ^ np.uint64(int.from_bytes(piece, "little"))
    return ok & (diff == 0)


def _booleans(buf: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    text = _gather(buf, start, end, 5)
    length = end - start
    true = (length == 4) & (text == np.frombuffer(b"true\0", dtype=np.uint8)).all(axis=1)
    return true | ((length == 5) & (text == np.frombuffer(b"false", dtype=np.uint8)).all(axis=1))


def _numbers(
    buf: np.ndarray, start: np.ndarray, end: np.ndarray, convert: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """(is a plain JSON number: digits, at most one inner dot, no leading zero; its value if asked)."""
    length = end - start
    ok = (length >= 1) & (length <= MAX_NUM)
    width = min(_width(start, end), MAX_NUM)
    chars = _gather(buf, start, np.where(ok, end, start), width)
    digit = (chars >= _DIGIT0) & (chars <= _DIGIT9)
    dot = chars == _DOT
    ok &= ((digit | dot) | (chars == 0)).all(axis=1) & (dot.sum(axis=1) <= 1)
    last = chars[np.arange(len(start)), np.clip(length - 1, 0, width - 1)]
    ok &= digit[:, 0] & (last >= _DIGIT0) & (last <= _DIGIT9)
    if width > 1:
        ok &= (chars[:, 0] != _DIGIT0) | (length == 1) | dot[:, 1]  # 0 or 0.x, never 01
    if not convert:
        return ok, None
    return ok, _decimal_values(chars, digit, dot, ok)


def _decimal_values(chars: np.ndarray, digit: np.ndarray, dot: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """The correctly rounded doubles of checked decimals `I.F` (k fraction digits), exactly as
    orjson and float() give them, without a string conversion for the usual ones:

    - at most 15 digits: the integer of all digits and 10**k are exact doubles, so one division
      is correctly rounded (Clinger's fast path);
    - an integer part I in [2**20, 2**40) with k <= 9 (timestamps): in I's binade the doubles are
      the multiples of 2**-s (s = 53 - bits of I), so the result is round-half-even(I * 2**s +
      F * 2**s / 10**k) * 2**-s, computed exactly in 64-bit integers;
    - anything else: numpy's (correctly rounded) string conversion.
    """
    values = np.zeros(len(chars))
    # Horner over the columns, digits left to right: a digit column multiplies by 10 and adds the
    # digit, the dot and the padding multiply by 1 and add 0 (columns made contiguous first).
    scale = np.where(digit, 10, 1).T.astype(np.int64, order="C")
    add = np.where(digit, chars - _DIGIT0, 0).T.astype(np.int64, order="C")
    mantissa = np.zeros(len(chars), dtype=np.int64)
    for column in range(chars.shape[1]):
        mantissa = mantissa * scale[column] + add[column]
    ndigits = digit.sum(axis=1)
    length = (chars != 0).sum(axis=1)
    k = np.where(dot.any(axis=1), length - np.argmax(dot, axis=1) - 1, 0)
    short = ok & (ndigits <= 15)
    values[short] = mantissa[short].astype(np.float64) / _POWERS[k[short]]
    whole, frac = np.divmod(mantissa, _INT_POWERS[np.minimum(k, 18)])
    binade = ok & ~short & (ndigits <= 18) & (k <= 9) & (whole >= 1 << 20) & (whole < 1 << 40)
    if binade.any():
        whole, frac, k = whole[binade], frac[binade], k[binade]
        shift = 53 - np.frexp(whole.astype(np.float64))[1]  # frexp: I = m * 2**e, 0.5 <= m < 1
        q, rem = np.divmod(frac << shift, _INT_POWERS[k])
        twice = 2 * rem
        q += (twice > _INT_POWERS[k]) | ((twice == _INT_POWERS[k]) & (q & 1 == 1))
        values[binade] = np.ldexp(((whole << shift) + q).astype(np.float64), -shift)
    rest = ok & ~short & ~binade
    if rest.any():
        values[rest] = chars[rest].view(f"S{chars.shape[1]}").ravel().astype(np.float64)
    return values


_INT_POWERS = np.array([10**k for k in range(19)], dtype=np.int64)
_POWERS = np.array([10.0**k for k in range(MAX_NUM + 1)])
