"""Numbers read from ClassAds, checked once the same way everywhere.

Ads come from other parties (startds, schedds, frontends, factories), and
a ClassAd value reaches Python as whatever type the ad held. Three traps
make a plain ``isinstance(value, (int, float))`` wrong:

- ``True`` is an ``int`` in Python but never a count in an ad;
- ``NaN`` and ``inf`` are floats, and ``int()`` of them raises;
- a string that looks like a number is a string: nothing here parses text.

So a number is an ``int`` that is not a ``bool``, or a finite ``float``.
"""

from __future__ import annotations

import math
from typing import TypeGuard


def is_int(value: object) -> TypeGuard[int]:
    """An ``int`` and not a ``bool``: what a strict reader accepts as a whole number."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """An ``int`` that is not a ``bool``, or a finite ``float``."""
    return is_int(value) or (isinstance(value, float) and math.isfinite(value))


def finite_number(value: object) -> float | None:
    """`value` as a float if it is a number (`is_number`), else None."""
    return float(value) if is_number(value) else None


def whole_number(value: object) -> int | None:
    """`value` as an int if it is a number, a float cut toward zero (59.9 -> 59); else None.

    An int stays exact, however large: it never goes through a float.
    """
    return int(value) if is_number(value) else None


def exact_whole_number(value: object) -> int | None:
    """`value` as an int if it is a number with no fraction (3 or 3.0); else None.

    For codes, where 2.5 is not "about 2" but no code at all.
    """
    if is_int(value):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def number_or(value: object, default: float) -> float:
    """`finite_number`, with `default` for anything that is not a number."""
    number = finite_number(value)
    return default if number is None else number


def whole_or(value: object, default: int) -> int:
    """`whole_number`, with `default` for anything that is not a number."""
    number = whole_number(value)
    return default if number is None else number
