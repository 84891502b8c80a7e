"""Row: JSON round trip (property-based), argmax tie-break, bounded decision-id memory."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from streams.core.table import RECENT_IDS, Row

finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def rows(draw: st.DrawFn) -> Row:
    k = draw(st.integers(min_value=1, max_value=6))

    def per_action(elements: st.SearchStrategy) -> list:
        return draw(st.lists(elements, min_size=k, max_size=k))

    return Row(
        q=per_action(finite),
        n=per_action(st.integers(min_value=0, max_value=2**53)),
        mean=per_action(finite),
        m2=per_action(st.floats(min_value=0.0, allow_infinity=False)),
        version=draw(st.integers(min_value=0, max_value=2**53)),
        applied=draw(st.dictionaries(st.text(max_size=20), st.integers(min_value=0, max_value=2**62))),
        recent_ids=draw(st.lists(st.text(max_size=24), max_size=RECENT_IDS, unique=True)),
    )


@given(rows())
def test_round_trip_through_json_is_exact(row: Row) -> None:
    back = Row.from_dict(json.loads(json.dumps(row.to_dict())))
    assert back == row
    assert all(back.seen(i) for i in row.recent_ids)


@given(rows())
def test_from_dict_copies_so_the_source_dict_is_not_aliased(row: Row) -> None:
    d = row.to_dict()
    back = Row.from_dict(d)
    back.q[0] += 1.0
    back.remember("fresh-id-not-in-row" * 2)
    assert d["q"][0] == row.q[0]
    assert "fresh-id-not-in-row" * 2 not in d["r"]


def test_empty_row() -> None:
    row = Row.empty(3)
    assert row == Row(q=[0.0] * 3, n=[0] * 3, mean=[0.0] * 3, m2=[0.0] * 3)
    assert row.version == 0 and row.applied == {} and row.recent_ids == []


def test_best_is_argmax_and_ties_go_to_lowest_index() -> None:
    assert Row(q=[1.0, 3.0, 2.0], n=[0] * 3, mean=[0.0] * 3, m2=[0.0] * 3).best() == 1
    assert Row(q=[1.0, 3.0, 3.0], n=[0] * 3, mean=[0.0] * 3, m2=[0.0] * 3).best() == 1
    assert Row.empty(4).best() == 0


def test_remember_is_bounded_and_forgets_the_oldest() -> None:
    row = Row.empty(2)
    for i in range(RECENT_IDS + 10):
        row.remember(f"d{i}")
    assert len(row.recent_ids) == RECENT_IDS
    assert row.recent_ids[0] == "d10" and row.recent_ids[-1] == f"d{RECENT_IDS + 9}"
    assert not row.seen("d9") and row.seen("d10")


def test_remember_twice_keeps_one_entry() -> None:
    row = Row.empty(2)
    row.remember("a")
    row.remember("a")
    assert row.recent_ids == ["a"]
