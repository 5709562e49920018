"""Where entry health lives between cycles and restarts: the policy's memory, the operators' overrides
and the audit log of every override, all in the factory's work folder.

- ``health.json``: each entry's state, reason, since (and the override it
  was under), and the changes not yet taken by the notifiers. Small, and
  rewritten whole each cycle before the cycle reports
  (`updraft.atomicwrite`), so a restart keeps every state and "since" and
  announces every change. A missing or damaged file is a warning naming
  it, and every entry starts active: health is a safety net, and losing it
  must never stop the factory from provisioning. A damaged list of changes
  costs only that list.
- ``health-history.json``: the evidence: each entry's outcomes (a day of
  them: about 14 MB and a third of a second to write at 5,000 entries),
  when they were last observed, the pilots counted good and the probes
  seen, kept together so a crash loses them consistently. The service keeps
  them in memory and writes them every ``health_save_seconds``, at once
  when an entry's old failures are forgotten (back to active, or an
  operator vouching for it), and when it stops; a crash loses at most that
  long of outcomes, never a state. Missing or damaged: a warning, and the
  states are kept with no evidence.
- ``health-overrides.json``: the operators' overrides by entry, written by
  ``updraft factory health set|clear`` and read by the service every cycle
  (so a change applies at the next cycle). A damaged file is an error
  naming it: the command refuses to write over it (nothing lost), the
  service reports it as a problem of the cycle and applies none.
- ``health-audit.log``: one JSON line per ``set`` or ``clear`` (who, when,
  what, why), only ever appended to.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from updraft import timefmt
from updraft.atomicwrite import write_atomically
from updraft.errors import ConfigError
from updraft.factory.health import History
from updraft.factory.health_model import EntryHealth, HealthState, Override, Transition

log = logging.getLogger(__name__)
_T = TypeVar("_T")

VERSION = 2
"""``health.json`` without the history, with the unannounced changes. Version 1 (history inline) is still read."""
HISTORY_VERSION = 1
MAX_UNANNOUNCED = 1000
"""Changes kept for the notifiers while their outbox cannot take them; the oldest go first beyond that."""


@dataclass(frozen=True)
class HealthMemory:
    """What the health policy remembers from one cycle to the next."""

    states: Mapping[str, EntryHealth] = field(default_factory=dict)
    history: Mapping[str, History] = field(default_factory=dict)
    evaluated_at: float | None = None
    """When the policy last ran; outcomes in the queue are new after it. None: never (a fresh start)."""
    counted: Mapping[str, float] = field(default_factory=dict)
    """Job ids counted good while they ran, and when: their completion then adds only a failure, which
    replaces that good (`updraft.factory.health.Evidence`), so each pilot has one outcome."""
    unannounced: tuple[Transition, ...] = ()
    """Changes decided and not yet taken by the notifiers' outbox, oldest first: saved with the states,
    offered to the notifiers every cycle until they take them (the outbox knows each by its key)."""
    history_saved_at: float | None = None
    """When the history was last written (`history_due`); None: not since it was loaded."""
    probes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Per probing entry, the job ids of its probes seen since probing began: one that left the queue is
    used up even before the history shows it (`updraft.factory.health.Probes`)."""
    written: tuple[int, int] | None = field(default=None, compare=False)
    """Which ``health.json`` this memory was read from or last written as (`written_by_us`)."""

    def announcing(self, transitions: tuple[Transition, ...]) -> tuple[Transition, ...]:
        """The changes to offer the notifiers this cycle: the ones still waiting, then `transitions`."""
        waiting = (*self.unannounced, *transitions)
        return waiting[-MAX_UNANNOUNCED:]


def memory_path(work_dir: Path) -> Path:
    return work_dir / "health.json"


def overrides_path(work_dir: Path) -> Path:
    return work_dir / "health-overrides.json"


def history_path(memory: Path) -> Path:
    """The history file beside a ``health.json``."""
    return memory.with_name("health-history.json")


def audit_path(work_dir: Path) -> Path:
    return work_dir / "health-audit.log"


# --------------------------------------------------------------------------
# Plain JSON values
# --------------------------------------------------------------------------


def _time(value: object, what: str) -> float:
    """An epoch time; a number no date can show (1e20) is as wrong as text, or formatting it stops cycles."""
    if not timefmt.is_time(value):
        raise ValueError(f"{what}: expected a time in {timefmt.RANGE}, got {value!r}")
    return float(value)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what}: expected text, got {value!r}")
    return value


def _state(value: object, what: str) -> HealthState:
    try:
        return HealthState(value)
    except ValueError:
        known = ", ".join(s.value for s in HealthState)
        raise ValueError(f"{what}: expected one of {known}, got {value!r}") from None


def override_to_json(override: Override) -> dict[str, Any]:
    return {
        "entry": override.entry,
        "state": override.state.value,
        "reason": override.reason,
        "until": override.until,
        "set_by": override.set_by,
        "set_at": override.set_at,
    }


def override_from_json(data: object, what: str) -> Override:
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected an object, got {data!r}")
    return Override(
        entry=_text(data.get("entry"), f"{what}.entry"),
        state=_state(data.get("state"), f"{what}.state"),
        reason=_text(data.get("reason"), f"{what}.reason"),
        until=_time(data.get("until"), f"{what}.until"),
        set_by=_text(data.get("set_by"), f"{what}.set_by"),
        set_at=_time(data.get("set_at"), f"{what}.set_at"),
    )


def _entry_to_json(health: EntryHealth) -> dict[str, Any]:
    return {
        "state": health.state.value,
        "reason": health.reason,
        "since": health.since,
        "next_review": health.next_review,
        "cap": health.cap,
        "override": override_to_json(health.override) if health.override else None,
    }


def _history_to_json(history: History) -> dict[str, Any]:
    return {"good": list(history.good), "bad": list(history.bad), "causes": list(history.causes)}


def transition_to_json(change: Transition) -> dict[str, Any]:
    return {
        "entry": change.entry,
        "old": change.old.value,
        "new": change.new.value,
        "reason": change.reason,
        "at": change.at,
        "by": change.by,
    }


def transition_from_json(data: object, what: str) -> Transition:
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected an object, got {data!r}")
    return Transition(
        entry=_text(data.get("entry"), f"{what}.entry"),
        old=_state(data.get("old"), f"{what}.old"),
        new=_state(data.get("new"), f"{what}.new"),
        reason=_text(data.get("reason"), f"{what}.reason"),
        at=_time(data.get("at"), f"{what}.at"),
        by=_text(data.get("by"), f"{what}.by"),
    )


def _times(value: object, what: str) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{what}: expected a list of times, got {type(value).__name__}")
    return tuple(_time(item, what) for item in value)


def _history(good: tuple[float, ...], bad: tuple[float, ...], causes: list[str], what: str) -> History:
    """The outcomes in time order, each failure with its cause. Out of order is no damage: a clock that
    stepped back wrote them so, and discarding them would lift every ban; sorted, the windows work again."""
    if len(bad) != len(causes):
        raise ValueError(f"{what}: {len(bad)} failure times in 'bad' but {len(causes)} 'causes'")
    failures = sorted(zip(bad, causes, strict=True), key=lambda pair: pair[0])  # stable: same-time causes keep order
    return History(tuple(sorted(good)), tuple(t for t, _ in failures), tuple(c for _, c in failures))


def _history_from_json(name: str, data: object) -> History:
    what = f"entries.{name}"
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected an object")
    causes = data.get("causes")
    if not isinstance(causes, list) or not all(isinstance(c, str) for c in causes):
        raise ValueError(f"{what}.causes: expected a list of causes")
    return _history(_times(data.get("good"), f"{what}.good"), _times(data.get("bad"), f"{what}.bad"), causes, what)


def _entry_from_json(name: str, data: object) -> EntryHealth:
    what = f"entries.{name}"
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected an object")
    raw_override = data.get("override")
    review, cap = data.get("next_review"), data.get("cap")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
        raise ValueError(f"{what}.cap: expected a count or null, got {cap!r}")
    health = EntryHealth(
        entry=name,
        state=_state(data.get("state"), f"{what}.state"),
        reason=_text(data.get("reason"), f"{what}.reason"),
        since=_time(data.get("since"), f"{what}.since"),
        next_review=None if review is None else _time(review, f"{what}.next_review"),
        cap=cap,
        override=None if raw_override is None else override_from_json(raw_override, f"{what}.override"),
    )
    return health


def memory_to_json(memory: HealthMemory) -> dict[str, Any]:
    """``health.json``: the states, and the changes not yet announced."""
    return {
        "version": VERSION,
        "unannounced": [transition_to_json(change) for change in memory.unannounced],
        "entries": {name: _entry_to_json(health) for name, health in sorted(memory.states.items())},
    }


def history_to_json(memory: HealthMemory, saved_at: float) -> dict[str, Any]:
    """``health-history.json``: the evidence, kept together so that a crash loses it consistently: each
    entry's outcomes, up to when they were observed, the pilots counted good and the probes seen."""
    return {
        "version": HISTORY_VERSION,
        "saved_at": saved_at,
        "evaluated_at": memory.evaluated_at,
        "counted_good": dict(sorted(memory.counted.items())),
        "probes_seen": {entry: sorted(ids) for entry, ids in sorted(memory.probes.items())},
        "entries": {name: _history_to_json(history) for name, history in sorted(memory.history.items())},
    }


def memory_from_json(data: object, where: Path | str = "health.json") -> HealthMemory:
    """The memory a ``health.json`` held, without its evidence (a version 1 file held it inline);
    ValueError naming the first thing wrong with the states. A damaged list of unannounced changes
    costs only those changes (a warning naming `where`): it must not lift every ban."""
    if not isinstance(data, dict) or data.get("version") not in (1, VERSION):
        raise ValueError(f"not a health memory of version 1 or {VERSION}")
    entries = data.get("entries")
    if not isinstance(entries, dict):
        raise ValueError("entries: expected an object")
    states = {name: _entry_from_json(name, item) for name, item in entries.items()}
    none: tuple[Transition, ...] = ()
    unannounced = _leniently(_unannounced, data.get("unannounced", []), none, where)
    memory = HealthMemory(states, unannounced=unannounced)
    if data["version"] == 1:
        inline = {name: _history_from_json(name, item) for name, item in entries.items()}
        memory = _with_evidence(memory, {**data, "entries": inline}, where)
    return memory


def history_from_json(data: object) -> dict[str, Any]:
    """The evidence a ``health-history.json`` held, its histories parsed; ValueError naming the first
    thing wrong with them."""
    if not isinstance(data, dict) or data.get("version") != HISTORY_VERSION:
        raise ValueError(f"not a health history of version {HISTORY_VERSION}")
    entries = data.get("entries")
    if not isinstance(entries, dict):
        raise ValueError("entries: expected an object")
    return {**data, "entries": {name: _history_from_json(name, item) for name, item in entries.items()}}


def _with_evidence(memory: HealthMemory, evidence: Mapping[str, Any], where: Path | str) -> HealthMemory:
    """`memory` with the histories, the evaluation time, the counted pilots and the probes of `evidence`;
    a damaged count or list costs only itself (a warning naming `where`)."""
    evaluated = _leniently(_evaluated_at, evidence.get("evaluated_at"), None, where)
    return dataclasses.replace(
        memory,
        history=evidence["entries"],
        evaluated_at=evaluated,
        counted=_leniently(_counted, evidence.get("counted_good", {}), {}, where),
        probes=_leniently(_probes, evidence.get("probes_seen", {}), {}, where),
    )


def _leniently(read: Callable[[object], _T], data: object, empty: _T, where: Path | str) -> _T:
    try:
        return read(data)
    except ValueError as err:
        log.warning("entry health memory %s: %s; that part is forgotten, the rest is kept", where, err)
        return empty


def _evaluated_at(data: object) -> float | None:
    return None if data is None else _time(data, "evaluated_at")


def _unannounced(data: object) -> tuple[Transition, ...]:
    if not isinstance(data, list):
        raise ValueError(f"unannounced: expected a list of changes, got {data!r}")
    return tuple(transition_from_json(item, f"unannounced[{index}]") for index, item in enumerate(data))


def _counted(data: object) -> dict[str, float]:
    """The job ids counted good while running ({} in a file from before they were kept)."""
    if not isinstance(data, dict):
        raise ValueError(f"counted_good: expected an object of job ids and times, got {data!r}")
    return {_text(job, "counted_good"): _time(at, f"counted_good.{job}") for job, at in data.items()}


def _probes(data: object) -> dict[str, frozenset[str]]:
    """The probes seen per probing entry ({} in a file from before they were kept)."""
    if not isinstance(data, dict) or not all(isinstance(ids, list) for ids in data.values()):
        raise ValueError(f"probes_seen: expected an object of entries and job id lists, got {data!r}")
    return {
        _text(entry, "probes_seen"): frozenset(_text(job, f"probes_seen.{entry}") for job in ids)
        for entry, ids in data.items()
    }


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def load_memory(path: Path, *, history: bool = True) -> HealthMemory:
    """The saved memory (`history` False: the states alone, for a quick look); a missing or damaged
    ``health.json`` is a warning naming it, and a fresh start (all active)."""
    try:
        memory = memory_from_json(json.loads(path.read_text(encoding="utf-8")), path)
    except FileNotFoundError:
        log.warning("no entry health memory at %s (first start?): every entry starts active", path)
        return HealthMemory()
    except (OSError, ValueError, RecursionError) as err:  # ValueError: bad JSON or text; RecursionError: too deep
        log.warning("entry health memory %s unusable (%s): every entry starts active, its history forgotten", path, err)
        return HealthMemory(written=_stamp(path))  # the damaged file: `written_by_us` until it is replaced
    memory = dataclasses.replace(memory, written=_stamp(path))
    if not history or memory.history:  # version 1 held its evidence inline
        return memory
    evidence = _load_evidence(history_path(path))
    return memory if evidence is None else _with_evidence(memory, evidence, history_path(path))


def _load_evidence(path: Path) -> dict[str, Any] | None:
    """The saved evidence; missing or damaged: a warning naming the file, and None (the states stay)."""
    try:
        return history_from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        log.warning("no entry health history at %s: the states are kept, their outcomes start afresh", path)
    except (OSError, ValueError, RecursionError) as err:
        log.warning("entry health history %s unusable (%s): the states are kept, their outcomes forgotten", path, err)
    return None


def save_memory(path: Path, memory: HealthMemory, *, history: bool = True, now: float | None = None) -> HealthMemory:
    """`save_history` (with `history`), then `save_states`; an OSError propagates."""
    if history:
        memory = save_history(path, memory, now)
    return save_states(path, memory)


def save_history(path: Path, memory: HealthMemory, now: float | None = None) -> HealthMemory:
    """Write the evidence beside ``health.json`` at `path`, atomically; the memory with `history_saved_at`
    set to `now` (the wall clock by default). An OSError propagates (the cycle reports it)."""
    saved_at = time.time() if now is None else now
    write_atomically(history_path(path), _compact(history_to_json(memory, saved_at)))
    return dataclasses.replace(memory, history_saved_at=saved_at)


def save_states(path: Path, memory: HealthMemory) -> HealthMemory:
    """Write ``health.json`` atomically; the memory stamped with the file written (`written_by_us`).
    An OSError propagates (the cycle reports it)."""
    write_atomically(path, _compact(memory_to_json(memory)))
    return dataclasses.replace(memory, written=_stamp(path))


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns


def written_by_us(path: Path, memory: HealthMemory) -> bool:
    """Whether ``health.json`` is still the file `memory` was read from or last written as. Another
    writer (``updraft factory once`` beside the running service) replaces it: the service must read it
    again rather than decide (and announce) the same change a second time, under another key. A file
    still missing, or still the damaged one read, is ours too: a service that cannot write keeps its
    memory rather than start afresh every cycle."""
    return _stamp(path) == memory.written


def history_due(
    memory: HealthMemory, transitions: tuple[Transition, ...], now: float, every: float, forgotten: bool = False
) -> bool:
    """Whether a running service writes the history this cycle: `every` seconds, and at once when an
    entry's old failures were `forgotten` or it changed back to active (which forgets them too): a
    restart reading the older file would find them again and degrade the repaired entry."""
    if memory.history_saved_at is None or not 0 <= now - memory.history_saved_at < every:
        return True  # due, or the clock stepped back
    return forgotten or any(change.new is HealthState.ACTIVE for change in transitions)


def _compact(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":")) + "\n"


def load_overrides(path: Path) -> dict[str, Override]:
    """The stored overrides by entry, expired ones included; a missing file means none.

    A damaged file raises ConfigError naming it and what is wrong, never "no overrides".
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as err:  # RecursionError: JSON nested too deep
        raise ConfigError(f"{path}: unreadable health override file: {err}") from err
    items = raw.get("overrides") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f"{path}: not a health override file (expected an object with a list 'overrides')")
    found: dict[str, Override] = {}
    for index, item in enumerate(items):
        try:
            override = override_from_json(item, f"overrides[{index}]")
        except ValueError as err:
            raise ConfigError(f"{path}: not a health override file: {err}") from err
        found[override.entry] = override
    return found


@contextmanager
def overrides_locked(path: Path) -> Iterator[None]:
    """Hold the overrides file's lock (a file beside it) until the block ends.

    ``set`` and ``clear`` read, change and write the whole file, then audit
    (or put the old file back): two operators doing so at once would lose one
    change. The service only reads the file, which is replaced atomically, so
    it never takes the lock and never waits for an operator.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def save_overrides(path: Path, overrides: Mapping[str, Override]) -> None:
    data = {"overrides": [override_to_json(o) for _, o in sorted(overrides.items())]}
    write_atomically(path, json.dumps(data, indent=2) + "\n")


def audit(path: Path, record: Mapping[str, Any]) -> None:
    """Append one line to the audit log and flush it to disk; earlier lines are never touched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(dict(record), sort_keys=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
