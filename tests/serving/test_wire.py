"""The wire parser on its own: the quote-count shortcut never lets a string through as a number."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bikeshare.serving.wire import WireError, parse_invocation

FEATURES = ("a", "b", "c")
numbers = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
station_ids = st.none() | st.integers(0, 10**9) | st.text(max_size=6)  # quotes, backslashes, unicode included


def _expected(value: object) -> float:
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


@given(rows=st.lists(st.tuples(station_ids, numbers, numbers, numbers), min_size=1, max_size=6), records=st.booleans())
def test_valid_bodies_parse_to_the_values_sent(rows: list[tuple], records: bool) -> None:
    if records:
        doc = {"instances": [dict(zip(("station_id", *FEATURES), row, strict=True)) for row in rows]}
    else:
        doc = {"columns": ["c", "station_id", "a", "b"], "data": [[r[3], r[0], r[1], r[2]] for r in rows]}
    batch = parse_invocation(orjson.dumps(doc), FEATURES, max_rows=10)
    expected = np.array([[_expected(v) for v in row[1:]] for row in rows], dtype=np.float64)
    np.testing.assert_array_equal(batch.matrix, expected)
    assert batch.station_ids == [row[0] for row in rows]


@given(
    rows=st.lists(st.tuples(station_ids, numbers, numbers, numbers), min_size=1, max_size=4),
    where=st.tuples(st.integers(0, 3), st.integers(1, 3)),
    text=st.text(max_size=4),
    records=st.booleans(),
)
def test_a_string_feature_anywhere_is_a_named_422(
    rows: list[tuple], where: tuple[int, int], text: str, records: bool
) -> None:
    rows = [list(r) for r in rows]
    row, column = where[0] % len(rows), where[1]
    rows[row][column] = text
    names = ("station_id", *FEATURES)
    if records:
        doc: dict = {"instances": [dict(zip(names, r, strict=True)) for r in rows]}
    else:
        doc = {"columns": list(names), "data": rows}
    with pytest.raises(WireError) as caught:
        parse_invocation(orjson.dumps(doc), FEATURES, max_rows=10)
    assert caught.value.status == 422 and caught.value.code == "wrong_type"
    label = "instance" if records else "row"
    assert f"feature {names[column]!r} of {label} {row} must be a number" in caught.value.detail


def test_extra_string_columns_and_keys_are_allowed_and_ignored() -> None:
    doc = {"columns": ["a", "note", "b", "c"], "data": [[1, 'say "hi"', 2, None]], "meta": {"by": "x"}}
    batch = parse_invocation(orjson.dumps(doc), FEATURES, max_rows=10)
    np.testing.assert_array_equal(batch.matrix, [[1.0, 2.0, math.nan]])
    assert batch.station_ids is None
