"""Pieces every decision shares: its record (steps, bounds, notes), the limits on it, fair integer sharing.

Both services decide a number per key (the frontend: idle pilots to ask an
entry for; the factory: pilots to submit for a request) by starting from a
wish and lowering it under one limit after another. `Record` is that number
under construction, and it is where the one rule for ``bound_by`` lives:

**A bound is recorded when it holds the number below what was wanted.**
When a limit is applied, its name goes into ``bound_by`` if the room it
leaves is no more than the number so far *and* less than the wish before
any limit. So:

- a limit that lowers the number is recorded;
- a limit at exactly the value an earlier limit already lowered it to is
  recorded too: an operator who lifts the first one needs to know the next
  one is waiting at the same value, or lifting it looks like it did nothing;
- a limit the number stays below (it did not reach it) is not recorded;
- a limit on a number nobody wanted (wish 0), or one that leaves exactly
  the wish, holds nothing back and is not recorded;
- a room shared by several numbers leaves each of them the room the others
  do not use (``room - sum(others)``) when they fit in it together, and its
  proportional share when they do not, so it is recorded for a number only
  when the numbers sharing it together reach it.

``bound_by`` therefore answers "what would have to be lifted to get more",
in the order the limits were applied, each name once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple


class Step(NamedTuple):
    """One intermediate value of a decision, with what produced it.

    A named tuple: every decision records several, and a frontend makes thousands of decisions a cycle."""

    name: str
    value: float
    note: str = ""


def share_out(wanted: Sequence[int], cap: int) -> list[int]:
    """Scale whole-number wishes down to sum to `cap`, in proportion.

    Largest remainder: everyone gets the floor of their exact share, and the
    rest go to the largest fractional parts, earlier position first on ties
    (callers pass sorted keys), so the result is deterministic and never
    exceeds any single wish.
    """
    total = sum(wanted)
    if total <= cap:
        return list(wanted)
    cap = max(0, cap)
    shares = [want * cap // total for want in wanted]
    remainders = [want * cap % total for want in wanted]
    left = cap - sum(shares)
    for position in sorted(range(len(wanted)), key=lambda i: (-remainders[i], i))[:left]:
        shares[position] += 1
    return shares


@dataclass(slots=True, eq=False)
class Record:
    """One number of a decision while the policy works on it, and the record of why it is what it is.

    Mutable only while one decide call runs; the services freeze its lists
    into their decision types. Compared and hashed by identity (eq=False):
    two records are never "equal", so they can key a dict.
    """

    value: int = 0
    wanted: int = 0
    """The number before any limit: only a limit that holds the number below it is a bound."""
    steps: list[Step] = field(default_factory=list)
    bound_by: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def want(self, value: int) -> None:
        """Start from `value` (negative wishes are 0): what every later limit is measured against."""
        self.value = self.wanted = max(0, value)

    def step(self, name: str, value: float, note: str = "") -> None:
        self.steps.append(Step(name, value, note))

    def bound(self, *names: str) -> None:
        """Record limits by name, each once, for a number this record does not carry (e.g. removals)."""
        self.bound_by.extend(name for name in names if name not in self.bound_by)

    def lower(self, value: int, kind: str, bounds: Sequence[str], detail: str) -> None:
        """Apply a limit leaving room for `value`: lower the number to it, and record it by the module's rule.

        The step is written only when the number actually goes down, so the
        steps read as the number's history; the bound is recorded also on a
        tie (see the module docstring).
        """
        value = max(0, value)
        if value <= self.value and value < self.wanted:
            self.bound(*bounds)
        if value < self.value:
            self.value = value
            self.step(kind, value, f"{'/'.join(bounds)}: {detail}" if detail else "/".join(bounds))


Limit = tuple[str, int | None, str]
"""(name, room, words for the log): one limit's room for more; None is no limit."""


@dataclass(frozen=True, slots=True)
class Cap:
    """The tightest of several limits: its room, and every limit that gives exactly that room."""

    bounds: tuple[str, ...]
    value: int | None
    """None: none of the limits is set."""
    detail: str


def tightest(limits: Iterable[Limit]) -> Cap:
    """The lowest room among the limits that are set (a negative room is 0), with every name that gives it.

    All names at the lowest room are kept: lifting one of them alone would
    change nothing, so an operator needs to see them all.
    """
    lowest: int | None = None
    names: list[str] = []
    details: list[str] = []
    for name, room, detail in limits:  # one pass: both decides call this for every key, every cycle
        if room is None:
            continue
        room = max(0, room)
        if lowest is None or room < lowest:
            lowest, names, details = room, [name], [detail]
        elif room == lowest:
            names.append(name)
            details.append(detail)
    return Cap(tuple(names), lowest, "; ".join(detail for detail in details if detail))


def shared_rooms(values: Sequence[int], room: int) -> list[int]:
    """The room one cap on the sum of `values` leaves each of them.

    When they fit together, each may grow by what the others leave unused,
    so a cap the sum does not reach is above every value and binds none;
    when they do not fit, each gets its proportional share (`share_out`).
    """
    total = sum(values)
    if total <= room:
        return [room - (total - value) for value in values]
    return share_out(values, room)


def apply_cap(records: Sequence[Record], cap: Cap, kind: str, wanted_words: str) -> None:
    """Hold the sum of the records' numbers within the cap, in proportion to what each still wants.

    `records` must come in a deterministic (sorted) order: it breaks ties
    in the shares. `wanted_words` follows the count in the step's detail
    (e.g. "requested in all").
    """
    if cap.value is None:
        return
    values = [record.value for record in records]
    detail = f"{cap.detail}; {sum(values)} {wanted_words}" if cap.detail else f"{sum(values)} {wanted_words}"
    for record, room in zip(records, shared_rooms(values, cap.value), strict=True):
        record.lower(room, kind, cap.bounds, detail)
