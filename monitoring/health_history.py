"""The recent changes of each entry's health state, kept across cycles and restarts for the status pages.

A snapshot carries only the changes its own cycle made; an operator
looking at an entry wants to see the last few, hours or days apart. The
status pages writer merges each cycle's changes into this history, keeps
at most a bounded number per entry (newest kept), forgets entries the
factory no longer advertises, and stores it as one JSON file per factory,
rewritten atomically and synced when it changed, so a restart or a power
cut loses nothing already shown.

Only what a `TransitionRow` holds is kept: the file and the pages show no
more than the snapshot does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from updraft import atomicwrite
from updraft.errors import MonitoringError
from updraft.monitoring.snapshot import TransitionRow

FORMAT_VERSION = 1
_ROW_FIELDS = tuple(f.name for f in fields(TransitionRow))
_TEXT_FIELDS = tuple(name for name in _ROW_FIELDS if name != "at")

History = Mapping[str, tuple[TransitionRow, ...]]
"""Entry -> its recorded changes, oldest first."""


def merged(history: History, new: Iterable[TransitionRow], entries: Iterable[str], per_entry: int) -> History:
    """`history` with the `new` changes added (a change already there, by key, is not added twice), only for
    `entries` (those advertised now), each trimmed to its `per_entry` newest changes."""
    keep = set(entries)
    rows: dict[str, dict[str, TransitionRow]] = {
        entry: {row.key: row for row in found} for entry, found in history.items() if entry in keep
    }
    for row in new:
        if row.entry in keep:
            rows.setdefault(row.entry, {}).setdefault(row.key, row)
    result: dict[str, tuple[TransitionRow, ...]] = {}
    for entry in sorted(rows):
        ordered = sorted(rows[entry].values(), key=lambda r: (r.at, r.key))
        result[entry] = tuple(ordered[-per_entry:])
    return result


def newest_first(history: History, limit: int) -> list[TransitionRow]:
    """The `limit` most recent changes over every entry, the newest first."""
    every = [row for found in history.values() for row in found]
    return sorted(every, key=lambda r: (r.at, r.key), reverse=True)[:limit]


# --------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------


def to_text(history: History) -> str:
    body = {"version": FORMAT_VERSION, "entries": {e: [asdict(r) for r in rows] for e, rows in history.items()}}
    return json.dumps(body, indent=1, sort_keys=True) + "\n"


def _row(path: Path, entry: str, data: Any) -> TransitionRow:
    if not isinstance(data, dict) or set(data) != set(_ROW_FIELDS):
        raise MonitoringError(f"{path}: entries.{entry}: expected objects with keys {sorted(_ROW_FIELDS)}")
    if not all(isinstance(data[name], str) for name in _TEXT_FIELDS):
        raise MonitoringError(f"{path}: entries.{entry}: {', '.join(_TEXT_FIELDS)} must be strings")
    at = data["at"]
    if isinstance(at, bool) or not isinstance(at, int | float):
        raise MonitoringError(f"{path}: entries.{entry}: at must be a number of seconds since the epoch")
    return TransitionRow(**{**data, "at": float(at)})


def from_text(path: Path, text: str) -> History:
    """The history in `text`; MonitoringError naming `path` and what is wrong."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise MonitoringError(f"{path}: not JSON ({err})") from None
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION or not isinstance(data.get("entries"), dict):
        raise MonitoringError(f'{path}: expected {{"version": {FORMAT_VERSION}, "entries": {{...}}}}')
    history: dict[str, tuple[TransitionRow, ...]] = {}
    for entry, rows in data["entries"].items():
        if not isinstance(rows, list):
            raise MonitoringError(f"{path}: entries.{entry}: expected a list of changes")
        history[entry] = tuple(_row(path, entry, row) for row in rows)
    return history


def load(path: Path) -> History:
    """The stored history, empty when there is none yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        raise MonitoringError(f"cannot read {path}: {err}") from None
    return from_text(path, text)


def save(path: Path, history: History) -> None:
    """Atomically, and synced: unlike the pages, the history cannot be rebuilt from the next cycle."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomicwrite.write_atomically(path, to_text(history), atomicwrite.PUBLIC_MODE, sync=True)
    except OSError as err:
        raise MonitoringError(f"cannot write {path}: {err.strerror or err}") from None
