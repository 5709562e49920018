"""Feedback from idle pilots: stop asking an entry for pilots its pilots will not run a job on.

The frontend predicts from ads whether an entry's pilots can run a shape of
jobs; the negotiator, with the site's START expression and policies no ad
shows, has the last word. When an entry has an idle slot of the group that
fits a shape (cores, memory, lifetime) while that shape's jobs placed there
stay idle, cycle after cycle, the negotiator is refusing them there. After
`IdleFeedback.cycles` consecutive cycles of that evidence spanning at least
`IdleFeedback.min_seconds`, the (shape, entry) pair is excluded: the
shape's jobs no longer count as demand on that entry (matching treats the
pair as if the match expression were false, so they are shared among the
group's other entries, or are unmatched). The exclusion holds until
`hold_seconds` after the last evidence: without demand the entry's idle
pilots are removed by the normal idle removal, the evidence stops, and the
hold keeps the frontend from asking again at once; then the pair is tried
afresh.

Everything here is pure: the streaks come in as a `FeedbackMemory` (the
previous cycle's) and go out as a new one, with `now` passed in. Evidence
is found by `decide`, which knows the slots (`evidence` takes its test).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from operator import itemgetter
from types import MappingProxyType

from updraft import timefmt
from updraft.frontend.config import IdleFeedback
from updraft.frontend.model import FeedbackMemory, JobShape, RefusalStreak

MAX_STREAKS = 20000
"""At most this many (group, entry, shape) streaks are remembered: evidence needs an idle pilot on the
entry, so real pools have far fewer; the bound keeps a pathological one (thousands of shapes, each
with idle pilots on thousands of entries) from growing the memory and its file without end.
Excluded pairs are kept first, then the longest streaks."""

NOTHING_EXCLUDED: Mapping[str, frozenset[str]] = MappingProxyType({})

_BY_PAIR = itemgetter(0, 1, 2)
"""`RefusalStreak.pair` without a property call: group, entry, shape."""

Pair = tuple[str, str]
"""(entry key, shape key) within one group."""


@dataclass(frozen=True, slots=True)
class Exclusion:
    """The shapes excluded on one entry of one group this cycle, and the streaks behind it."""

    entry: str
    shapes: frozenset[str]
    cycles: int
    """The longest streak among them."""
    since: float
    """The earliest streak's first evidence."""
    last: float
    """The latest evidence among them."""


def by_group(memory: FeedbackMemory) -> dict[str, dict[Pair, RefusalStreak]]:
    """The streaks of each group by (entry, shape): read once per cycle."""
    found: dict[str, dict[Pair, RefusalStreak]] = {}
    for streak in memory.streaks:
        found.setdefault(streak.group, {})[(streak.entry, streak.shape)] = streak
    return found


def is_excluded(streak: RefusalStreak, settings: IdleFeedback, now: float) -> bool:
    """Excluded from the cycle after the streak qualified, until `hold_seconds` past its last evidence."""
    return settings.enabled and streak.excluded_since is not None and now - streak.last <= settings.hold_seconds


def summarise(streaks: Iterable[RefusalStreak]) -> dict[str, Exclusion]:
    """Streaks gathered by entry key: the shapes, the longest streak, its span."""
    by_entry: dict[str, list[RefusalStreak]] = {}
    for streak in streaks:
        by_entry.setdefault(streak.entry, []).append(streak)
    return {
        entry: Exclusion(
            entry=entry,
            shapes=frozenset(s.shape for s in found),
            cycles=max(s.cycles for s in found),
            since=min(s.since for s in found),
            last=max(s.last for s in found),
        )
        for entry, found in by_entry.items()
    }


def exclusions(old: Mapping[Pair, RefusalStreak], settings: IdleFeedback, now: float) -> dict[str, Exclusion]:
    """By entry key: what this cycle's matching must not place there, from one group's earlier streaks."""
    return summarise(s for s in old.values() if is_excluded(s, settings, now))


def excluded_map(found: Mapping[str, Exclusion]) -> Mapping[str, frozenset[str]]:
    """The form matching takes: entry key -> shape keys not to place there."""
    if not found:
        return NOTHING_EXCLUDED
    return MappingProxyType({entry: exclusion.shapes for entry, exclusion in found.items()})


def evidence(
    placed: Mapping[str, frozenset[str]],
    excluded: Mapping[str, frozenset[str]],
    idle_shapes: Mapping[str, tuple[JobShape, int]],
    usable_sizes: Mapping[str, Sequence[tuple[int, int]]],
) -> frozenset[Pair]:
    """(entry, shape) pairs refused this cycle: the shape has idle jobs that were placed on the entry (or
    would have been, but for an exclusion), and the entry has an idle slot of the group they fit.

    `usable_sizes`: by entry key, the (cpus, memory) of the group's idle
    slots there that live long enough to run a job. An excluded pair keeps
    giving evidence while its pilots sit idle: the negotiator does not know
    of the exclusion and would still send the jobs there if it could.
    """
    found: set[Pair] = set()
    for entries in (placed, excluded):
        for entry, keys in entries.items():
            sizes = usable_sizes.get(entry)
            if not sizes:
                continue
            for key in keys:
                idle = idle_shapes.get(key)
                if idle is not None and fits(idle[0], sizes):
                    found.add((entry, key))
    return frozenset(found)


def fits(shape: JobShape, sizes: Sequence[tuple[int, int]]) -> bool:
    """Some slot of these (cpus, memory) sizes takes one of the shape's jobs."""
    cpus, memory = shape.cpus, shape.memory_mb
    return any(slot_cpus >= cpus and slot_memory >= memory for slot_cpus, slot_memory in sizes)


def _extended(old: RefusalStreak | None, group: str, pair: Pair, settings: IdleFeedback, now: float) -> RefusalStreak:
    """The streak with this cycle's evidence added; excluded from now on once it has enough cycles over
    enough time (and it stays so while evidence lasts). Built directly: this runs once per pair."""
    cycles, since, excluded = (1, now, None) if old is None else (old.cycles + 1, old.since, old.excluded_since)
    if excluded is None and cycles >= settings.cycles and now - since >= settings.min_seconds:
        excluded = now
    return RefusalStreak(group, pair[0], pair[1], cycles, since, now, excluded)


def advance(
    old: Mapping[Pair, RefusalStreak], group: str, settings: IdleFeedback, seen: Set[Pair], now: float
) -> list[RefusalStreak]:
    """One group's streaks after this cycle's evidence `seen`.

    Evidence extends a streak (or starts one). No evidence ends a streak,
    except an excluded one, which is kept until its hold is over; evidence
    after that starts a new streak. Disabled: nothing is remembered.
    """
    if not settings.enabled:
        return []
    kept: list[RefusalStreak] = []  # the memory is put in order once, by `bounded`
    for pair in seen:
        streak = old.get(pair)
        if streak is not None and streak.excluded_since is not None and not is_excluded(streak, settings, now):
            streak = None  # its hold is over: the pair is tried afresh
        kept.append(_extended(streak, group, pair, settings, now))
    kept.extend(streak for pair, streak in old.items() if pair not in seen and is_excluded(streak, settings, now))
    return kept


def carried(old: Mapping[Pair, RefusalStreak], settings: IdleFeedback, now: float) -> list[RefusalStreak]:
    """One group's streaks through a cycle that could not see its jobs or pilots: unknown is not
    "no evidence", so nothing is extended or broken; only holds that are over end."""
    if not settings.enabled:
        return []
    return [s for _, s in sorted(old.items()) if s.excluded_since is None or is_excluded(s, settings, now)]


def bounded(streaks: Iterable[RefusalStreak]) -> FeedbackMemory:
    """The memory to carry: at most `MAX_STREAKS`, excluded pairs first, then the longest streaks."""
    chosen = list(streaks)
    if len(chosen) > MAX_STREAKS:
        chosen.sort(key=lambda s: (s.excluded_since is None, -s.cycles, s.pair))
        chosen = chosen[:MAX_STREAKS]
    return FeedbackMemory(tuple(sorted(chosen, key=_BY_PAIR)))


def note(exclusion: Exclusion, jobs: float, shapes: int, settings: IdleFeedback, now: float) -> str:
    """The decision record's words for an exclusion: how many jobs, since when, and until when if it is on hold."""
    what = f"{jobs:g} idle jobs of {shapes} {'shape' if shapes == 1 else 'shapes'} not counted"
    since = timefmt.utc(exclusion.since, timefmt.ISO)
    if exclusion.last >= now:
        return f"{what}: the entry's idle pilots have refused them for {exclusion.cycles} cycles since {since}"
    last = timefmt.utc(exclusion.last, timefmt.ISO)
    retry = timefmt.utc(exclusion.last + settings.hold_seconds, timefmt.ISO)
    return (
        f"{what}: the entry's idle pilots refused them for {exclusion.cycles} cycles "
        f"from {since} to {last}; tried again after {retry}"
    )
