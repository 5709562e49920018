"""Scheduled downtimes of entries, kept in one JSON file the operator edits
through `updraft factory down|up|downtimes`.

The file is rewritten atomically (write, fsync, rename), so a crash never
leaves half a list; a damaged file is an error naming it, never "no
downtimes", because that would quietly send pilots to a site in
maintenance.
"""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from updraft.atomicwrite import write_atomically
from updraft.errors import ConfigError

ALL = "all"


@dataclass(frozen=True)
class Downtime:
    """An entry (or every entry: "all"), for every frontend or one, from start until end (None: open)."""

    entry: str
    start: float
    end: float | None = None
    frontend: str | None = None
    comment: str = ""

    def __post_init__(self) -> None:
        problem = period_problem(self.start, self.end)
        if problem is not None:
            raise ValueError(problem)

    def covers(self, entry: str, frontend: str | None, now: float) -> bool:
        in_time = self.start <= now and (self.end is None or now < self.end)
        return in_time and self.entry in (ALL, entry) and self.frontend in (None, frontend)


def period_problem(start: object, end: object) -> str | None:
    """Why `start`..`end` is not a downtime's period (None: it is).

    Both are epoch seconds, finite, and an end (None: open) comes after the
    start: a period that ends before it begins would be stored and listed
    while never applying, which hides the operator's slip.
    """
    if not _is_time(start):
        return f"start: expected epoch seconds (years 1970 to 9999), got {start!r}"
    if end is None:
        return None
    if not _is_time(end):
        return f"end: expected epoch seconds (years 1970 to 9999) or null (open), got {end!r}"
    if typing.cast(float, end) <= typing.cast(float, start):
        return f"end ({end}) must be after start ({start})"
    return None


_LAST_MOMENT = 253402300799.0
"""9999-12-31 23:59:59 UTC: later moments cannot be shown as dates (`updraft factory downtimes`)."""


def _is_time(value: object) -> bool:
    """Epoch seconds of a moment a calendar can show (years 1970 to 9999)."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= _LAST_MOMENT
    )


def active(downtimes: Iterable[Downtime], entry: str, frontend: str | None, now: float) -> Downtime | None:
    """The downtime that applies now, if any (frontend None asks about the entry as a whole)."""
    return next((d for d in downtimes if d.covers(entry, frontend, now)), None)


def end_now(downtimes: Iterable[Downtime], entry: str, frontend: str | None, now: float) -> tuple[list[Downtime], int]:
    """`up`: close every downtime of that entry (and frontend) running now; returns the list and how many."""
    closed, result = 0, []
    for downtime in downtimes:
        if downtime.entry == entry and downtime.frontend == frontend and downtime.covers(entry, frontend, now):
            closed += 1
            if downtime.start < now:  # one that began this very instant is dropped: it never lasted
                result.append(replace(downtime, end=now))
        else:
            result.append(downtime)
    return result, closed


def load(path: Path) -> list[Downtime]:
    """The stored downtimes; a missing file means none."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: unreadable downtime file: {err}") from err
    try:
        items = list(raw["downtimes"])
    except (KeyError, TypeError) as err:
        raise ConfigError(f"{path}: not a downtime file ({err})") from err
    downtimes, problems = [], []
    for index, item in enumerate(items):
        try:
            downtimes.append(Downtime(**item))
        except (TypeError, ValueError) as err:
            problems.append(f"downtimes[{index}]: {err}")
    if problems:
        raise ConfigError(f"{path}: not a downtime file: {'; '.join(problems)}")
    return downtimes


def save(path: Path, downtimes: Iterable[Downtime]) -> None:
    write_atomically(path, json.dumps({"downtimes": [asdict(d) for d in downtimes]}, indent=2) + "\n")


def downtimes_path(work_dir: Path) -> Path:
    """Where `updraft factory downtime` keeps the downtimes, under the factory's work folder."""
    return work_dir / "downtimes.json"
