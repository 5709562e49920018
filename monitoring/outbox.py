"""The notifiers' outbox: what each notifier still has to announce, what it already did, and its failures.

It is one JSON file per factory in the monitoring directory, replaced
atomically (and synced) after every change, under a lock shared by every
thread and process that touches it, so that:

- a change is queued for every notifier the cycle it is seen, before any
  delivery starts; a delivery that hangs or a restart loses nothing;
- a change is announced once per notifier: it is queued only if its key
  (`TransitionRow.key`) is neither waiting nor among the keys already sent,
  and it leaves the queue in the same write that records it as sent;
- two deliveries for one notifier never overlap, even from a reloaded
  service while the old one's delivery still runs: a delivery holds a lease
  in the file until its deadline has passed;
- the file stays small: at most ``max_pending`` waiting changes per notifier
  (the oldest dropped beyond that, and counted, so the next message can say
  so) and the last `SENT_MEMORY` keys sent.

The one window left: a message accepted by its receiver just before the
process dies, before the file says so, is sent again after the restart.
Announcing twice was preferred over possibly never announcing.

Every decision here is a pure function of the state and ``now``; only
`Outbox` reads and writes the file.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from updraft import atomicwrite
from updraft.monitoring.files import path_part
from updraft.monitoring.notifiers.base import Change, NotifierSettings

log = logging.getLogger(__name__)

VERSION = 1
SENT_MEMORY = 5000
"""Keys remembered as sent per notifier: far more than the changes a factory makes between two restarts."""
LEASE_MARGIN_SECONDS = 5.0
"""A delivery's lease outlives its deadline by this much: the child is killed at the deadline."""


@dataclass(frozen=True)
class NotifierState:
    """One notifier's part of the outbox."""

    pending: tuple[Change, ...] = ()
    """Changes not yet announced, oldest first."""
    queued_at: tuple[float, ...] = ()
    """When each pending change was queued (the wall clock), in the same order."""
    sent: tuple[tuple[str, float], ...] = ()
    """(key, when) of the changes announced, oldest first; the last `SENT_MEMORY`."""
    dropped: int = 0
    """Changes dropped from a full queue since the last message that said so."""
    failures: int = 0
    """Failed deliveries in a row; 0 after a success."""
    failed_total: int = 0
    sent_total: int = 0
    """Changes announced since the outbox was created."""
    messages_total: int = 0
    last_sent: float = 0.0
    next_attempt: float = 0.0
    last_error: str = ""
    lease_until: float = 0.0

    def knows(self, key: str) -> bool:
        return any(c.key == key for c in self.pending) or any(k == key for k, _ in self.sent)


@dataclass(frozen=True)
class Due:
    """Whether a notifier should deliver now, and why (logged when it does not)."""

    now: bool
    why: str


def queue(state: NotifierState, changes: Iterable[Change], now: float, max_pending: int) -> NotifierState:
    """`state` with the changes it does not know yet appended; the oldest dropped beyond `max_pending`."""
    pending, queued_at = list(state.pending), list(state.queued_at)
    known = {c.key for c in pending} | {k for k, _ in state.sent}
    for change in changes:
        if change.key not in known:
            known.add(change.key)
            pending.append(change)
            queued_at.append(now)
    excess = max(0, len(pending) - max_pending)
    return dataclasses.replace(
        state, pending=tuple(pending[excess:]), queued_at=tuple(queued_at[excess:]), dropped=state.dropped + excess
    )


def due(state: NotifierState, settings: NotifierSettings, now: float) -> Due:
    """A delivery is due when changes wait, no delivery holds the lease, the back-off has passed,
    and the digest interval has passed since both the oldest waiting change and the last message."""
    if not state.pending:
        return Due(False, "nothing to announce")
    if now < state.lease_until:
        return Due(False, "a delivery is still under way")
    if now < state.next_attempt:
        return Due(False, f"retrying after {state.failures} failure(s) in a row, in {state.next_attempt - now:.0f} s")
    ready = max(state.queued_at[0], state.last_sent) + settings.interval_seconds
    if now < ready:
        return Due(False, f"gathering changes into one message, sent in {ready - now:.0f} s")
    return Due(True, f"{len(state.pending)} change(s) waiting")


def claim(state: NotifierState, settings: NotifierSettings, now: float) -> tuple[NotifierState, tuple[Change, ...]]:
    """The oldest changes for one message (up to ``max_per_message``), and the state holding the lease."""
    batch = state.pending[: settings.max_per_message]
    return dataclasses.replace(state, lease_until=now + settings.timeout_seconds + LEASE_MARGIN_SECONDS), batch


def backoff(failures: int, settings: NotifierSettings) -> float:
    """Seconds before the next attempt after `failures` failures in a row: doubling, capped."""
    exponent = min(failures - 1, 60)  # 2**60 s is past any cap; keeps the float finite
    return min(settings.max_retry_seconds, settings.retry_seconds * math.pow(2, exponent))


def delivered(state: NotifierState, batch: tuple[Change, ...], dropped: int, now: float) -> NotifierState:
    """`state` after `batch` (and the note of `dropped` changes) went out at `now`."""
    keys = {c.key for c in batch}
    kept = [(c, q) for c, q in zip(state.pending, state.queued_at, strict=True) if c.key not in keys]
    sent = (*state.sent, *((c.key, now) for c in batch))[-SENT_MEMORY:]
    return dataclasses.replace(
        state,
        pending=tuple(c for c, _ in kept),
        queued_at=tuple(q for _, q in kept),
        sent=sent,
        dropped=max(0, state.dropped - dropped),
        failures=0,
        sent_total=state.sent_total + len(batch),
        messages_total=state.messages_total + 1,
        last_sent=now,
        next_attempt=0.0,
        last_error="",
        lease_until=0.0,
    )


def failed(state: NotifierState, error: str, settings: NotifierSettings, now: float) -> NotifierState:
    """`state` after a failed delivery at `now`: counted, and the next attempt pushed back."""
    failures = state.failures + 1
    return dataclasses.replace(
        state,
        failures=failures,
        failed_total=state.failed_total + 1,
        next_attempt=now + backoff(failures, settings),
        last_error=error,
        lease_until=0.0,
    )


# --------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------


def outbox_path(directory: Path, factory: str) -> Path:
    return directory / f"notifications-{path_part(factory)}.json"


def _to_json(states: Mapping[str, NotifierState]) -> str:
    data = {"version": VERSION, "notifiers": {name: dataclasses.asdict(s) for name, s in states.items()}}
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def _scalar(value: object, kind: object, what: str) -> object:
    """`value` if it is of the field type `kind` names (counts are whole and not negative, numbers finite)."""
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if kind == "float":
        return _number(value, what)
    raise ValueError(f"{what}: expected {kind}, got {repr(value)[:40]}")


def _fields(cls: type, data: object, what: str, lists: Iterable[str] = ()) -> dict[str, Any]:
    """The scalar fields of dataclass `cls` in `data`, each of its type; the `lists` left to the caller.

    A file written by hand or half by another version must be refused here, whole,
    or a wrong type would raise later, in every cycle, outside `_load`'s care.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected an object, got {type(data).__name__}")
    known = {f.name: f.type for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{what}: unknown keys {unknown}")
    skipped = set(lists)
    return {k: _scalar(v, known[k], f"{what}.{k}") for k, v in data.items() if k not in skipped}


def _list(data: Mapping[str, Any], key: str, what: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{what}.{key}: expected a list, got {type(value).__name__}")
    return value


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what}: expected float, got {repr(value)[:40]}")
    return float(value)


def _sent(item: object, what: str) -> tuple[str, float]:
    if not isinstance(item, list) or len(item) != 2:
        raise ValueError(f"{what}: expected [key, time], got {repr(item)[:40]}")
    return str(_scalar(item[0], "str", what)), _number(item[1], what)


def _state_of(data: object, what: str) -> NotifierState:
    values = _fields(NotifierState, data, what, lists=("pending", "queued_at", "sent"))
    assert isinstance(data, dict)  # _fields refused anything else
    values["pending"] = tuple(
        Change(**_fields(Change, c, f"{what}.pending[{i}]")) for i, c in enumerate(_list(data, "pending", what))
    )
    values["queued_at"] = tuple(_number(q, f"{what}.queued_at") for q in _list(data, "queued_at", what))
    values["sent"] = tuple(_sent(item, f"{what}.sent") for item in _list(data, "sent", what))
    state = NotifierState(**values)
    if len(state.pending) != len(state.queued_at):
        raise ValueError(f"{what}: pending and queued_at differ in length")
    return state


def _from_json(text: str) -> dict[str, NotifierState]:
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError(f"not an outbox of version {VERSION}")
    notifiers = data.get("notifiers")
    if not isinstance(notifiers, dict):
        raise ValueError(f"notifiers: expected an object, got {type(notifiers).__name__}")
    return {str(name): _state_of(section, f"notifiers.{name}") for name, section in notifiers.items()}


@dataclass
class Outbox:
    """The outbox file's states, read under its lock; `save` replaces the file."""

    path: Path
    states: dict[str, NotifierState] = field(default_factory=dict)

    def save(self) -> None:
        atomicwrite.write_atomically(self.path, _to_json(self.states))


def _load(path: Path) -> dict[str, NotifierState]:
    """The states in `path`; none when it does not exist. A damaged file is kept aside and logged."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        return _from_json(text)
    except (ValueError, KeyError, TypeError, RecursionError) as err:  # RecursionError: JSON nested too deep
        aside = path.with_name(path.name + ".damaged")
        os.replace(path, aside)
        log.error("notifier outbox %s is damaged (%s); kept as %s, starting with an empty one", path, err, aside)
        return {}


@contextmanager
def opened(path: Path) -> Iterator[Outbox]:
    """The outbox at `path`, locked against every other thread and process until the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield Outbox(path, _load(path))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
