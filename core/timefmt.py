"""Epoch times read from files and ads, and shown to people.

A time comes from places we do not control (a hand-edited file, another
service's ad). A finite number such as 1e20 is a valid float but no date:
formatting it raises OverflowError or OSError, and an exception there would
stop a whole cycle or a delivery retried forever. So readers check times
with `is_time` (a bad time is treated like any other bad value there), and
everything that shows a time goes through `utc`, which never raises.
"""

from __future__ import annotations

import math
import time
from typing import TypeGuard

EARLIEST = 0
"""1970-01-01 00:00:00 UTC."""
LATEST = 253402300799
"""9999-12-31 23:59:59 UTC: the last second every platform's gmtime and datetime can show."""
RANGE = f"{EARLIEST}..{LATEST} (years 1970-9999)"
"""The accepted range, as error messages name it."""

SPACED = "%Y-%m-%d %H:%M:%S UTC"
"""``2026-09-21 14:13:20 UTC``: status pages, notifications, the factory's records."""
ISO = "%Y-%m-%dT%H:%M:%SZ"
"""``2026-09-21T14:13:20Z``: the frontend's records."""
MINUTES = "%Y-%m-%d %H:%M UTC"
"""``2026-09-21 14:13 UTC``: what operators set and read to the minute (downtimes, health overrides,
cloud instances no pilot owns)."""


def is_time(value: object) -> TypeGuard[float]:
    """Whether `value` is an epoch time in `RANGE` (a bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and EARLIEST <= value <= LATEST


def utc(seconds: float, form: str = SPACED) -> str:
    """`seconds` in UTC as `form` has it; a value outside `RANGE` shown as itself, never an exception."""
    if not is_time(seconds):
        return f"(time out of range: {seconds!r})"
    return time.strftime(form, time.gmtime(seconds))
