"""Numbers from ads: bools, text, NaN and infinities are never numbers; defaults stand in for them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from updraft.adnumbers import exact_whole_number, finite_number, is_int, is_number, number_or, whole_number, whole_or

NOT_NUMBERS = [True, False, None, "3", "3.0", "", "nan", b"3", [3], {"n": 3}, math.nan, math.inf, -math.inf, 1j]
BIG = 2**70 + 1


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_what_is_not_a_number_is_none_or_the_default(value: object) -> None:
    assert not is_number(value)
    assert (finite_number(value), whole_number(value), exact_whole_number(value)) == (None, None, None)
    assert (number_or(value, 1.5), whole_or(value, -1)) == (1.5, -1)


@pytest.mark.parametrize(
    ("value", "as_float", "as_whole", "exact"),
    [
        (0, 0.0, 0, 0),
        (7, 7.0, 7, 7),
        (-3, -3.0, -3, -3),
        (59.9, 59.9, 59, None),
        (-59.9, -59.9, -59, None),
        (3.0, 3.0, 3, 3),
        (1e300, 1e300, int(1e300), int(1e300)),
        (BIG, float(BIG), BIG, BIG),
    ],
)
def test_numbers_are_read(value: float, as_float: float, as_whole: int, exact: int | None) -> None:
    assert is_number(value)
    assert finite_number(value) == as_float and isinstance(finite_number(value), float)
    assert whole_number(value) == as_whole and type(whole_number(value)) is int
    assert exact_whole_number(value) == exact
    assert (number_or(value, 1.5), whole_or(value, -1)) == (as_float, as_whole)


def test_a_large_int_stays_exact() -> None:
    assert whole_number(BIG) == BIG != int(float(BIG))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, True),
        (0, True),
        (-1, True),
        (True, False),
        (False, False),
        (1.0, False),
        ("1", False),
        (None, False),
        (math.nan, False),
    ],
)
def test_is_int_is_strict(value: object, expected: bool) -> None:
    assert is_int(value) is expected


@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**80), 2**80),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=8),
        st.binary(max_size=8),
    )
)
def test_nothing_raises_and_every_answer_is_finite(value: object) -> None:
    number, whole, exact = finite_number(value), whole_number(value), exact_whole_number(value)
    assert number is None or math.isfinite(number)
    assert whole is None or type(whole) is int
    assert exact is None or exact == whole
    assert (number is None) == (whole is None) == (not is_number(value))
