"""Scheduled downtimes of entries, kept in one JSON file the operator edits
through `updraft factory down|up|downtimes`.

The file is rewritten atomically (write, fsync, rename), so a crash never
leaves half a list; a damaged file is an error naming it, never "no
downtimes", because that would quietly send pilots to a site in
maintenance.
"""

from __future__ import annotations

import json
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

    def covers(self, entry: str, frontend: str | None, now: float) -> bool:
        in_time = self.start <= now and (self.end is None or now < self.end)
        return in_time and self.entry in (ALL, entry) and self.frontend in (None, frontend)


def active(downtimes: Iterable[Downtime], entry: str, frontend: str | None, now: float) -> Downtime | None:
    """The downtime that applies now, if any (frontend None asks about the entry as a whole)."""
    return next((d for d in downtimes if d.covers(entry, frontend, now)), None)


def end_now(downtimes: Iterable[Downtime], entry: str, frontend: str | None, now: float) -> tuple[list[Downtime], int]:
    """`up`: close every downtime of that entry (and frontend) running now; returns the list and how many."""
    closed, result = 0, []
    for downtime in downtimes:
        if downtime.entry == entry and downtime.frontend == frontend and downtime.covers(entry, frontend, now):
            result.append(replace(downtime, end=now))
            closed += 1
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
        return [Downtime(**item) for item in raw["downtimes"]]
    except (KeyError, TypeError) as err:
        raise ConfigError(f"{path}: not a downtime file ({err})") from err


def save(path: Path, downtimes: Iterable[Downtime]) -> None:
    write_atomically(path, json.dumps({"downtimes": [asdict(d) for d in downtimes]}, indent=2) + "\n")


def downtimes_path(work_dir: Path) -> Path:
    """Where `updraft factory downtime` keeps the downtimes, under the factory's work folder."""
    return work_dir / "downtimes.json"
