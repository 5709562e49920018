"""How many idle pilots to ask each factory entry for, and which pilots to remove.

``decide`` is the whole frontend policy as one pure function: an
``Observation`` and the config in, a ``Plan`` out, with ``now`` passed in so
a recorded cycle replays exactly. Every number it produces carries the
steps that made it (``Decision.steps``) and the limits that held it back
(``Decision.bound_by``, by the one rule in `updraft.records`: a limit is
named when it holds the number below what was wanted, ties included),
because "why did the frontend ask for 3 pilots?"
is the question operators ask most.

Order of the policy, per (group, entry):

1. only idle slots that can run a waiting job, and live long enough, count
   as capacity;
2. need = pilots the matching idle jobs need, minus that capacity;
3. only 1/attenuation of the need is asked for per cycle (pilots take
   minutes to arrive; asking for everything at once overshoots);
4. a small reserve while old idle jobs wait (so they do not wait for the
   slow ramp alone);
5. no idle jobs -> nothing, so requests fall to zero within one cycle;
6. per-entry caps; 7. curbs near every maximum; 9. downtime and health; 10. removal;
   then 8. aggregate caps per group, frontend and pool, shared out over
   all entries. Downtime is zeroed before the shares are computed, so an
   entry that cannot get pilots does not take a share from one that can.

Missing data is never read as no demand. When the pilot slots or the entry
ads cannot be read, or an entry this frontend asked before is no longer
advertised, its last good request (as published, ``Observation.published``)
is kept as it was; when one of a group's schedds cannot be read, the
request is computed from the jobs that are seen and is never below the last
good one. Either way nothing is removed, and the record says why and since
when. A request is kept until the data is back or was last complete more
than ``hold_last_request_seconds`` ago (`_keep` says what happens then).
Pilots are counted per glidein, not per slot (`_SlotView`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from updraft import timefmt
from updraft.frontend import feedback
from updraft.frontend.config import FrontendConfig, Group
from updraft.frontend.matching import EntryDemand, GroupMatch, match
from updraft.frontend.model import (
    AdvertisedHealth,
    Decision,
    DecisionInputs,
    EntryAd,
    JobShape,
    Observation,
    PilotSlot,
    Plan,
    RefusalStreak,
    SlotState,
    pilot_cores,
    pilot_state,
    slots_by_pilot,
)
from updraft.frontend.prospective import prospective_slots
from updraft.protocol import PublishedRequest, RemoveMode
from updraft.records import Cap, Record, apply_cap, tightest

_FLOAT_SLACK = 9
"""Decimals kept before rounding up: the 1/k split leaves float noise (3.0000000004)."""


def _ceil(value: float) -> int:
    """Round up, ignoring float noise so 3 jobs split in thirds still need 1 pilot, not 2."""
    return math.ceil(round(value, _FLOAT_SLACK))


@dataclass(frozen=True, slots=True)
class _SlotView:
    """This group's pilots on one entry, counted the ways the policy needs.

    Pilots are glideins, counted once however many slots they advertise (a
    partitionable slot and its dynamic slots, fixed slots, nodes): counting
    slots would call one busy 8-core pilot three pilots and hold every
    maximum far below what it allows. Idle *slots* are kept apart: they are
    the capacity a waiting job can use, also on a pilot that is busy.
    """

    idle: tuple[PilotSlot, ...] = ()
    """Idle slots: capacity for waiting jobs."""
    pilots: int = 0
    idle_pilots: int = 0
    """Pilots none of whose slots is busy or leaving."""
    busy: int = 0
    """Pilots not idle (running, retiring, failed): the ones ALL removal may take."""
    running: int = 0
    failed: int = 0
    """Of `busy`, those running a job and those failed: reported, not decided on."""
    cores: int = 0
    """Cores of all these pilots, for monitoring."""

    @property
    def total(self) -> int:
        """Every pilot the entry is running for this group."""
        return self.pilots


@dataclass(frozen=True, slots=True)
class _Totals:
    """Pilot counts one level up from an entry: T in the curbs and headroom."""

    pilots: int = 0
    idle: int = 0


_SLOT_STATES = tuple(SlotState)
"""Iterating the enum itself is slow, and a view is made per (group, entry)."""
_NO_PILOTS = _SlotView()
"""The view of an entry where the group has no pilot (immutable: one serves every such entry)."""


def _view_of(slots: Sequence[PilotSlot]) -> _SlotView:
    states = dict.fromkeys(_SLOT_STATES, 0)
    cores = 0
    named: list[PilotSlot] = []
    idle: list[PilotSlot] = []
    for slot in slots:
        if slot.state is SlotState.IDLE:
            idle.append(slot)
        if slot.pilot:
            named.append(slot)
        else:  # a slot of an unknown pilot is a pilot of its own: counted without grouping
            states[slot.state] += 1
            cores += slot.cores
    for mine in slots_by_pilot(named).values():
        states[mine[0].state if len(mine) == 1 else pilot_state(slot.state for slot in mine)] += 1
        cores += pilot_cores(mine)
    pilots = sum(states.values())
    return _SlotView(
        idle=tuple(idle),
        pilots=pilots,
        idle_pilots=states[SlotState.IDLE],
        busy=pilots - states[SlotState.IDLE],
        running=states[SlotState.RUNNING],
        failed=states[SlotState.FAILED],
        cores=cores,
    )


def _slot_views(slots: Iterable[PilotSlot]) -> dict[tuple[str, str], _SlotView]:
    by_origin: dict[tuple[str, str, str], list[PilotSlot]] = {}
    for slot in slots:
        by_origin.setdefault((slot.group, slot.entry, slot.factory), []).append(slot)
    return {(group, f"{entry}@{factory}"): _view_of(chosen) for (group, entry, factory), chosen in by_origin.items()}


def _totals(views: Mapping[tuple[str, str], _SlotView], group: str | None) -> _Totals:
    chosen = [view for (name, _), view in views.items() if group is None or name == group]
    return _Totals(pilots=sum(v.total for v in chosen), idle=sum(v.idle_pilots for v in chosen))


# --------------------------------------------------------------------------
# A decision under construction
# --------------------------------------------------------------------------


_NO_INPUTS = DecisionInputs()
"""A draft's inputs until `_inputs` fills them (immutable: shared)."""


@dataclass(slots=True)
class _Draft:
    """Mutable while the policy runs; frozen into a Decision at the end."""

    group: str
    entry: EntryAd
    max_pilots: int = 0
    remove: RemoveMode = RemoveMode.NONE
    remove_max: int = 0
    inputs: DecisionInputs = _NO_INPUTS
    record: Record = field(default_factory=Record)
    """The request, its steps, bounds and notes (`updraft.records` says when a bound is recorded)."""
    held_since: float | None = None
    withdrawn: bool = False

    @property
    def idle(self) -> int:
        """Idle pilots requested so far: the record's number."""
        return self.record.value

    @property
    def sort_key(self) -> tuple[str, str]:
        return (self.group, self.entry.key)

    def freeze(self) -> Decision:
        return Decision(
            group=self.group,
            entry=self.entry,
            idle=self.idle,
            max_pilots=self.max_pilots,
            remove=self.remove,
            remove_max=self.remove_max,
            inputs=self.inputs,
            steps=tuple(self.record.steps),
            bound_by=tuple(self.record.bound_by),
            notes=tuple(self.record.notes),
            held_since=self.held_since,
            withdrawn=self.withdrawn,
        )


# --------------------------------------------------------------------------
# Steps 1-5: the request before any limit
# --------------------------------------------------------------------------


def _slot_fits(slot: PilotSlot, requirements: Iterable[tuple[int, int]]) -> bool:
    return any(slot.cpus >= cpus and slot.memory_mb >= memory for cpus, memory in requirements)


def _smallest_needs(requirements: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """The least memory wanted per number of cpus: a slot fits some job exactly when it fits one of these,
    and there are a few of them where there may be hundreds of sizes."""
    least: dict[int, int] = {}
    for cpus, memory in requirements:
        if memory < least.get(cpus, memory + 1):
            least[cpus] = memory
    return tuple(least.items())


def usable_idle_slots(
    idle_slots: Iterable[PilotSlot],
    requirements: Iterable[tuple[int, int]],
    now: float,
    min_lifetime: float,
) -> int:
    """Idle slots that would actually take a waiting job.

    A slot too small for every waiting job, or about to die, is not capacity:
    counting it would starve those jobs forever while the slot sits unused.
    """
    if not idle_slots:
        return 0
    needs = _smallest_needs(requirements)
    return sum(1 for slot in idle_slots if _lives_long_enough(slot, now, min_lifetime) and _slot_fits(slot, needs))


def _lives_long_enough(slot: PilotSlot, now: float, min_lifetime: float) -> bool:
    """A slot about to die is no capacity: a job sent there would not finish."""
    return slot.to_die is None or slot.to_die - now >= min_lifetime


def _inputs(
    demand: EntryDemand | None, view: _SlotView, usable: int, group: Group, limits: tuple[Limit, Limit]
) -> DecisionInputs:
    (max_pilots, _), (max_idle, _) = limits
    return DecisionInputs(
        idle_jobs=demand.idle_jobs if demand else 0.0,
        old_idle_jobs=demand.old_idle_jobs if demand else 0.0,
        running_jobs=demand.running_jobs if demand else 0.0,
        idle_pilots_needed=demand.idle_pilots_needed if demand else 0.0,
        old_idle_pilots=demand.old_idle_pilots if demand else 0.0,
        pilots=view.total,
        idle_pilots=view.idle_pilots,
        idle_slots=len(view.idle),
        usable_idle_slots=usable,
        busy_slots=view.busy,
        running_slots=view.running,
        failed_slots=view.failed,
        pilot_cores=view.cores,
        ramp_up_attenuation=group.ramp_up_attenuation,
        reserve_idle=group.reserve_idle,
        max_pilots=max_pilots,
        max_idle=max_idle,
    )


def _request_before_limits(draft: _Draft, demand: EntryDemand | None, usable: int, group: Group) -> None:
    """Steps 2-5: need, attenuated ramp, old-idle reserve.

    The reserve is what keeps long-waiting jobs from depending on the ramp
    alone; it is capped by the old jobs' own pilot-equivalents so one old
    single-core job never earns a full reserve of 8-core pilots.
    """
    if demand is None or demand.idle_jobs <= 0:
        draft.record.want(0)
        draft.record.step("request", 0, "no idle jobs match")
        return
    need = max(0, _ceil(demand.idle_pilots_needed - usable))
    ramp = _ceil(need / group.ramp_up_attenuation)
    reserve = min(group.reserve_idle, _ceil(demand.old_idle_pilots)) if demand.old_idle_jobs > 0 else 0
    draft.record.step("need", need)
    draft.record.step("ramp", ramp)
    draft.record.step("reserve", reserve)
    draft.record.want(ramp + reserve)
    draft.record.step("request", draft.idle)


# --------------------------------------------------------------------------
# Steps 6-7: per-entry caps and curbs at every level
# --------------------------------------------------------------------------


Limit = tuple[int, tuple[str, ...]]
"""A maximum and the names of the settings that impose it."""


def _lower_of(own: tuple[str, int], factory: tuple[str, int]) -> Limit:
    """The group's limit or the factory's, whichever is lower (both names on a tie); the factory's 0 means it
    set none."""
    cap = tightest(((own[0], own[1], ""), (factory[0], factory[1] if factory[1] > 0 else None, "")))
    return (own[1] if cap.value is None else cap.value), cap.bounds


def entry_limits(entry: EntryAd, group: Group) -> tuple[Limit, Limit]:
    """(max pilots, names) and (max idle, names) for one entry of one group."""
    running = _lower_of(
        ("group.max_running_per_entry", group.limits.max_running_per_entry), ("entry.max_pilots", entry.max_pilots)
    )
    idle = _lower_of(("group.max_idle_per_entry", group.limits.max_idle_per_entry), ("entry.max_idle", entry.max_idle))
    return running, idle


class _Ceiling(NamedTuple):
    """A maximum M on an observed total T, at one level (entry, group, frontend, pool); two per decision."""

    level: str
    bounds: tuple[str, ...]
    total: int
    maximum: int
    what: str


def _curb(draft: _Draft, ceiling: _Ceiling, fraction: float) -> None:
    """At the maximum: ask for nothing. Near it: ask for half.

    Pilots requested now arrive minutes later; halving near a maximum keeps
    the arrivals from overshooting it, without stopping growth altogether.
    Applied also to a request an earlier limit already zeroed: by the rule in
    `updraft.records`, a maximum that would hold it at zero too is a bound.
    """
    if ceiling.total >= ceiling.maximum:
        seen = f"{ceiling.total} of {ceiling.maximum} {ceiling.what}"
        draft.record.lower(0, "zero", ceiling.bounds, f"{seen}, at the maximum")
    elif ceiling.total >= fraction * ceiling.maximum:
        seen = f"{ceiling.total} of {ceiling.maximum} {ceiling.what}"
        bound = (f"{ceiling.level}.curb",)
        draft.record.lower(_ceil(draft.idle / 2), "curb", bound, f"{seen} (curb at {fraction:.0%})")


def _entry_caps(draft: _Draft, view: _SlotView, limits: tuple[Limit, Limit]) -> list[_Ceiling]:
    """Step 6: the request fits the entry's idle cap and its remaining pilot room (`entry_limits`)."""
    (max_pilots, running_names), (max_idle, idle_names) = limits
    draft.max_pilots = max_pilots
    draft.record.lower(max_idle, "cap", idle_names, "")
    room = max_pilots - view.total
    if room > 0:
        draft.record.lower(room, "cap", running_names, f"room for {room} more pilots")
    return [
        _Ceiling("entry", running_names, view.total, max_pilots, "pilots"),
        _Ceiling("entry", idle_names, view.idle_pilots, max_idle, "idle pilots"),
    ]


def _level_ceilings(level: str, totals: _Totals, max_running: int, max_idle: int) -> list[_Ceiling]:
    return [
        _Ceiling(level, (f"{level}.max_running_pilots",), totals.pilots, max_running, "pilots"),
        _Ceiling(level, (f"{level}.max_idle_pilots",), totals.idle, max_idle, "idle pilots"),
    ]


def _outer_ceilings(
    group_name: str, config: FrontendConfig, observation: Observation, views: Mapping[tuple[str, str], _SlotView]
) -> list[_Ceiling]:
    """Group, frontend and pool maxima with the totals observed against them."""
    group = config.groups[group_name].limits
    pool = _Totals(pilots=observation.pool_running_pilots, idle=observation.pool_idle_pilots)
    return (
        _level_ceilings("group", _totals(views, group_name), group.max_running_pilots, group.max_idle_pilots)
        + _level_ceilings(
            "frontend", _totals(views, None), config.limits.max_running_pilots, config.limits.max_idle_pilots
        )
        + _level_ceilings("pool", pool, config.pool.max_running_pilots, config.pool.max_idle_pilots)
    )


# --------------------------------------------------------------------------
# Step 8: aggregate caps, shared out proportionally
# --------------------------------------------------------------------------


def _aggregate_cap(level: str, max_idle: int, idle_seen: int, max_running: int, pilots_seen: int) -> Cap:
    """The tighter of the idle room and the running room at one level.

    Requested pilots become running pilots; asking for more than the running
    room would only queue pilots the limit will never let run.
    """
    idle_detail = f"{idle_seen} of {max_idle} idle already" if idle_seen else f"at most {max_idle} idle"
    return tightest(
        (
            (f"{level}.max_idle_pilots", max_idle - idle_seen, idle_detail),
            (
                f"{level}.max_running_pilots",
                max_running - pilots_seen,
                f"{pilots_seen} of {max_running} pilots running",
            ),
        )
    )


def _apply_cap(drafts: Sequence[_Draft], cap: Cap) -> None:
    ordered = sorted(drafts, key=lambda d: d.sort_key)
    apply_cap([draft.record for draft in ordered], cap, "scale", "requested in all")


def _group_cap(group: Group, totals: _Totals) -> Cap:
    limits = group.limits
    return _aggregate_cap("group", limits.max_idle_pilots, 0, limits.max_running_pilots, totals.pilots)


def _frontend_cap(config: FrontendConfig, totals: _Totals) -> Cap:
    limits = config.limits
    return _aggregate_cap("frontend", limits.max_idle_pilots, 0, limits.max_running_pilots, totals.pilots)


def _pool_cap(config: FrontendConfig, observation: Observation) -> Cap:
    """The pool's idle maximum already holds everyone's idle slots, so only the rest is ours."""
    pool = config.pool
    return _aggregate_cap(
        "pool",
        pool.max_idle_pilots,
        observation.pool_idle_pilots,
        pool.max_running_pilots,
        observation.pool_running_pilots,
    )


# --------------------------------------------------------------------------
# Steps 9-10: downtime and removal
# --------------------------------------------------------------------------


def _downtime(draft: _Draft) -> None:
    """No new pilots for an entry in downtime; its running ones keep working (max_pilots unchanged)."""
    if draft.entry.in_downtime:
        draft.record.notes.append("entry in downtime")
        draft.record.lower(0, "zero", ("entry.downtime",), "entry in downtime")
    if draft.entry.health is not None:
        _health(draft, draft.entry.health)


def _health(draft: _Draft, health: AdvertisedHealth) -> None:
    """The factory's judgement of the entry: banned asks nothing (as downtime: running pilots stay);
    degraded and probing ask at most the factory's cap, which it would enforce anyway.

    Probing is capped, not zeroed: a factory's probe pilots are pilots of the
    frontends' requests, so an entry nobody asks for could never be probed.
    """
    said = f"entry {health.described()}"
    if health.banned:
        draft.record.notes.append(said)
        draft.record.lower(0, "zero", (HEALTH_BOUND,), said)
    elif health.cap is not None:
        draft.record.notes.append(f"{said}; the factory keeps at most {health.cap} idle pilots there")
        draft.record.lower(health.cap, "cap", (HEALTH_BOUND,), said)


def _share_health_caps(drafts: Sequence[_Draft]) -> None:
    """An entry's health cap is the factory's for all its idle pilots: this frontend's groups share it.

    Each group's request is already within the cap (`_health`); only entries
    asked by several groups can go over it together, so only those are shared.
    """
    capped: dict[str, list[_Draft]] = {}
    for draft in drafts:
        health = draft.entry.health
        if health is not None and health.cap is not None and draft.idle:
            capped.setdefault(draft.entry.key, []).append(draft)
    for sharing in capped.values():
        health = sharing[0].entry.health
        if len(sharing) > 1 and health is not None and health.cap is not None:
            said = f"entry {health.described()}, shared by {len(sharing)} groups"
            _apply_cap(sharing, Cap((HEALTH_BOUND,), health.cap, said))


HEALTH_BOUND = "entry.health"
"""The bound a request held by the entry's advertised health names (`UpdraftReqBoundBy`)."""


def _removal(draft: _Draft, demand: EntryDemand | None, view: _SlotView, group: Group, missing: _Missing) -> None:
    """Step 10: remove only pilots no job here can use, and never on a partial view.

    An unreachable schedd looks exactly like an empty queue, vanished entry
    ads like entries nobody offers, an unread pool like one without pilots;
    removing on any of them would kill pilots whose jobs are merely unseen.
    ALL removal also kills busy pilots, so it takes a fraction per cycle:
    one bad cycle must never drain the pool.
    """
    if missing.reasons:
        draft.record.notes.append(f"removal disabled: {'; '.join(missing.reasons)}")
        return
    idle_jobs = demand.idle_jobs if demand else 0.0
    running_jobs = demand.running_jobs if demand else 0.0
    mode = group.removal.mode
    if mode == "none":
        if view.total and idle_jobs <= 0:
            draft.record.notes.append("removal mode none: unneeded pilots are kept")
        return
    if idle_jobs <= 0 and view.idle_pilots:
        draft.remove, draft.remove_max = RemoveMode.IDLE, view.idle_pilots
        draft.record.notes.append(f"remove up to {view.idle_pilots} idle pilots: no idle jobs match")
    if mode == "all" and idle_jobs <= 0 and running_jobs <= 0 and view.busy:
        most = max(1, math.floor(group.removal.max_fraction_per_cycle * view.busy))
        draft.remove, draft.remove_max = RemoveMode.ALL, most
        draft.record.notes.append(f"remove up to {most} of {view.busy} busy pilots: no jobs match")


# --------------------------------------------------------------------------
# Missing data: keep the last good request
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Missing:
    """What a (group, entry)'s decision cannot see this cycle.

    `whole`: the pilots or the entry itself are unknown, so no request can be
    computed and the last good one is kept as it was. Otherwise only some of
    the group's jobs are unseen (a schedd): the request is computed from the
    jobs that are seen, and the last good one is its floor.
    """

    reasons: tuple[str, ...] = ()
    whole: bool = False


_NOTHING_MISSING = _Missing()


def _missing(group_name: str, key: str, cycle: _Cycle) -> _Missing:
    observation = cycle.observation
    seen_whole = not (observation.slots_unread or observation.entries_unread or group_name in cycle.unreachable)
    if seen_whole and (key in cycle.entries or (group_name, key) not in cycle.last):
        return _NOTHING_MISSING
    reasons: list[str] = []
    if observation.slots_unread:
        reasons.append("pilot slots unreadable")
    if observation.entries_unread:
        reasons.append("entry ads unreadable")
    elif key not in cycle.entries and (group_name, key) in cycle.last:
        reasons.append("entry no longer advertised")
    whole = bool(reasons)
    reasons.extend(f"{source} unreachable" for source in cycle.unreachable.get(group_name, ()))
    return _Missing(tuple(reasons), whole)


def _incomplete_since(last: PublishedRequest | None, now: float) -> float:
    """When the data was last complete: a kept request says so; a computed one was complete when published."""
    if last is None:
        return now
    if last.held_since is not None:
        return min(last.held_since, now)
    return min(last.time, now) if last.time is not None else now


def _within_group(draft: _Draft, last: PublishedRequest, group: Group) -> None:
    """A kept request never exceeds the group's own per-entry limits: the ad read back is only as
    trustworthy as the WMS collector, and the configuration is not missing data."""
    limits = group.limits
    draft.max_pilots = min(last.max_pilots, limits.max_running_per_entry)
    if draft.max_pilots < last.max_pilots:
        draft.record.bound("group.max_running_per_entry")
    draft.record.lower(limits.max_idle_per_entry, "cap", ("group.max_idle_per_entry",), "")


def _keep(draft: _Draft, last: PublishedRequest | None, missing: _Missing, cycle: _Cycle) -> bool:
    """Keep the last good request against missing data; False when there is none to keep (any more).

    Called after the request is computed from what is seen. A kept request
    is never lower than the last good one (its idle and, when the entry is
    unseen, its maximum), until the data is back or was last complete more
    than `hold_last_request_seconds` ago. Past that, a request that could
    not be computed is withdrawn, and one computed from partly seen jobs
    stands as computed: a factory submits nothing and removes nothing for a
    request it does not have, and a schedd that stays down must not keep
    pilots coming for jobs nobody has seen for a quarter hour.
    """
    since = _incomplete_since(last, cycle.now)
    draft.held_since = since
    why = "; ".join(missing.reasons)
    limit = cycle.config.hold_last_request_seconds
    age, shown_since = cycle.now - since, timefmt.utc(since, timefmt.ISO)
    if last is None or age > limit:
        gone = (
            "no good request to keep"
            if last is None
            else f"data complete last at {shown_since}, longer ago than hold_last_request_seconds ({limit} s)"
        )
        draft.record.notes.append(f"{why}: {gone}")
        if missing.whole:
            draft.withdrawn = True
            draft.record.want(0)
            draft.record.step("withdrawn", 0, f"{why}: nothing asked, nothing removed")
        return not draft.withdrawn
    kept = f"kept the last good request (idle {last.idle}, max {last.max_pilots}): {why}"
    draft.record.notes.append(f"{kept}, since {shown_since} ({age:.0f} s of {limit} s)")
    if missing.whole:
        draft.record.want(last.idle)
        draft.record.step("hold", last.idle, kept)
        _within_group(draft, last, cycle.config.groups[draft.group])
    elif last.idle > draft.idle:
        draft.record.want(last.idle)
        draft.record.step("hold", last.idle, kept)
    return True


# --------------------------------------------------------------------------
# Putting it together
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Cycle:
    """What every group's decisions share: the inputs, bucketed once."""

    observation: Observation
    config: FrontendConfig
    now: float
    entries: Mapping[str, EntryAd]
    views: Mapping[tuple[str, str], _SlotView]
    unreachable: Mapping[str, tuple[str, ...]]
    last: Mapping[tuple[str, str], PublishedRequest]
    """This frontend's requests as published before this cycle: the last good ones to keep."""
    prospective: Mapping[str, Mapping[str, Any]]
    """Each entry's prospective pilot slot (`updraft.frontend.prospective`), by entry key."""
    limits: dict[tuple[str, int, int], tuple[Limit, Limit]] = field(default_factory=dict)
    """`entry_limits` by (group, the entry's max pilots and max idle): most entries share a few."""

    def limits_of(self, entry: EntryAd, group_name: str) -> tuple[Limit, Limit]:
        question = (group_name, entry.max_pilots, entry.max_idle)
        found = self.limits.get(question)
        if found is None:
            found = self.limits[question] = entry_limits(entry, self.config.groups[group_name])
        return found

    streaks: Mapping[str, Mapping[feedback.Pair, RefusalStreak]] = field(default_factory=dict)
    """The idle-feedback streaks of earlier cycles (`Observation.feedback`), by group."""


def _entry_for(key: str, cycle: _Cycle) -> EntryAd:
    """The advertised entry, or a bare stand-in for one with pilots (or a kept request) but no ad this cycle."""
    found = cycle.entries.get(key)
    if found is not None:
        return found
    name, _, factory = key.rpartition("@")
    return EntryAd(name=name, factory=factory, attrs={})


def _within_entry(draft: _Draft, limits: tuple[Limit, Limit]) -> None:
    """A kept request still fits what its (advertised) entry allows now: that is data, not missing data."""
    (max_pilots, running_names), (max_idle, idle_names) = limits
    if max_pilots < draft.max_pilots:
        draft.max_pilots = max_pilots
        draft.record.bound(*running_names)
    draft.record.lower(max_idle, "cap", idle_names, "")
    _downtime(draft)


def _decide_entry(
    group_name: str, key: str, demand: EntryDemand | None, cycle: _Cycle, ceilings: Sequence[_Ceiling]
) -> _Draft:
    """Steps 1-7, 9 and 10 for one (group, entry); step 8 needs all entries at once.

    Missing data (`_missing`) keeps the last good request (`_keep`): the
    entry's own limits, curbs and downtime apply only to what is seen.
    """
    group = cycle.config.groups[group_name]
    view = cycle.views.get((group_name, key), _NO_PILOTS)
    entry = demand.entry if demand else _entry_for(key, cycle)
    draft = _Draft(group=group_name, entry=entry)
    missing = _missing(group_name, key, cycle)
    requirements = demand.requirements if demand else frozenset()
    usable = usable_idle_slots(view.idle, requirements, cycle.now, group.min_pilot_lifetime_seconds)
    limits = cycle.limits_of(entry, group_name)
    draft.inputs = _inputs(demand, view, usable, group, limits)
    if key not in cycle.entries and not missing.whole:
        draft.withdrawn = True
        draft.record.notes.append("entry not advertised, and no request for it to keep: nothing asked")
        return draft
    if missing.whole:
        if _keep(draft, cycle.last.get((group_name, key)), missing, cycle) and key in cycle.entries:
            _within_entry(draft, limits)
        _removal(draft, demand, view, group, missing)
        return draft
    _request_before_limits(draft, demand, usable, group)
    if missing.reasons:
        _keep(draft, cycle.last.get((group_name, key)), missing, cycle)
    for ceiling in _entry_caps(draft, view, limits) + list(ceilings):
        _curb(draft, ceiling, group.curb_fraction)
    _downtime(draft)
    _removal(draft, demand, view, group, missing)
    return draft


# --------------------------------------------------------------------------
# Feedback from idle pilots (`updraft.frontend.feedback`)
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Refusals:
    """One group's idle feedback this cycle: what matching skipped, the jobs behind it, the streaks to carry on."""

    excluded: Mapping[str, feedback.Exclusion]
    """By entry key, from the earlier cycles' streaks: applied to this cycle's matching."""
    idle: Mapping[str, tuple[JobShape, int]]
    """The group's shapes with idle jobs by `shape_key` (empty when no exclusion nor idle pilot needs them)."""
    streaks: tuple[RefusalStreak, ...]
    """After this cycle's evidence."""

    def waiting(self, entry: str) -> list[str]:
        """The shapes excluded on `entry` that still have idle jobs."""
        found = self.excluded.get(entry)
        return sorted(key for key in found.shapes if key in self.idle) if found else []


def _usable_sizes(group_name: str, group: Group, cycle: _Cycle) -> dict[str, tuple[tuple[int, int], ...]]:
    """By entry key: the distinct (cpus, memory) of the group's idle slots there that live long enough."""
    found: dict[str, tuple[tuple[int, int], ...]] = {}
    for (name, key), view in cycle.views.items():
        if name == group_name and view.idle:
            sizes = {
                (slot.cpus, slot.memory_mb)
                for slot in view.idle
                if _lives_long_enough(slot, cycle.now, group.min_pilot_lifetime_seconds)
            }
            if sizes:
                found[key] = tuple(sizes)
    return found


def _with_idle_slots(group_name: str, cycle: _Cycle) -> frozenset[str]:
    """Entry keys with an idle slot of the group: the only entries where idle jobs can be refused."""
    return frozenset(key for (name, key), view in cycle.views.items() if name == group_name and view.idle)


def _feedback_blind(group_name: str, observation: Observation) -> bool:
    """The cycle cannot tell refusal from absence: the pilots, the entries or some of the group's jobs are unseen."""
    seen = observation
    return seen.slots_unread or seen.entries_unread or group_name in seen.incomplete_groups


def _refusals(
    group_name: str,
    matched: GroupMatch,
    excluded: Mapping[str, feedback.Exclusion],
    with_idle: Set[str],
    cycle: _Cycle,
) -> _Refusals:
    """The group's streaks after this cycle: extended where its idle pilots sat next to its idle jobs.

    Without an idle slot of the group anywhere there can be no evidence, so
    a cycle of a busy (or empty) pool pays nothing for shape keys. `with_idle`:
    the entries with an idle slot of the group, where matching watched placements.
    """
    group = cycle.config.groups[group_name]
    settings = group.idle_feedback
    old = cycle.streaks.get(group_name, {})
    pilots_idle = settings.enabled and bool(with_idle)
    idle = matched.keyed if excluded or pilots_idle else {}
    if _feedback_blind(group_name, cycle.observation):
        return _Refusals(excluded, idle, tuple(feedback.carried(old, settings, cycle.now)))
    seen: frozenset[feedback.Pair] = frozenset()
    if pilots_idle:
        usable = _usable_sizes(group_name, group, cycle)
        seen = feedback.evidence(matched.placed, feedback.excluded_map(excluded), idle, usable)
    return _Refusals(excluded, idle, tuple(feedback.advance(old, group_name, settings, seen, cycle.now)))


def _note_refusals(group_name: str, drafts: Sequence[_Draft], refusals: _Refusals, cycle: _Cycle) -> None:
    """Says, in each (group, entry) decision with excluded shapes, how many idle jobs are not counted and why.

    Only shapes that still have idle jobs are named; the streak shown is the
    one after this cycle where it went on, the earlier one where it is on hold.
    """
    if not refusals.excluded:
        return
    latest = dict(cycle.streaks.get(group_name, {}))
    latest.update({(s.entry, s.shape): s for s in refusals.streaks})
    settings = cycle.config.groups[group_name].idle_feedback
    for draft in drafts:
        waiting = refusals.waiting(draft.entry.key)
        if not waiting:
            continue
        jobs = float(sum(refusals.idle[key][1] for key in waiting))
        summary = feedback.summarise(latest[(draft.entry.key, key)] for key in waiting)[draft.entry.key]
        draft.inputs = draft.inputs._replace(refused_idle_jobs=jobs)
        draft.record.notes.append(feedback.note(summary, jobs, len(waiting), settings, cycle.now))


def _decide_group(
    group_name: str, shapes: Sequence[JobShape], cycle: _Cycle
) -> tuple[list[_Draft], GroupMatch, _Refusals]:
    """Match (leaving out what idle pilots refused), decide per entry, then hold the group's sum under its own caps.

    An entry whose exclusions still hold back idle jobs gets a decision even
    with no pilots and no demand left, so the record says why it gets none.
    Matching merges identical shapes from several schedds and works out their
    `shape_key`s for the feedback (`GroupMatch.keyed`), once per distinct shape.
    """
    group = cycle.config.groups[group_name]
    watch = _with_idle_slots(group_name, cycle)
    excluded = feedback.exclusions(cycle.streaks.get(group_name, {}), group.idle_feedback, cycle.now)
    matched = match(
        shapes,
        cycle.observation.entries,
        group_name,
        group,
        slots=cycle.prospective,
        excluded=feedback.excluded_map(excluded),
        watch=watch,
        keys=group.idle_feedback.enabled,
    )
    refusals = _refusals(group_name, matched, excluded, watch, cycle)
    keys = (
        set(matched.demands)
        | {key for (name, key) in cycle.views if name == group_name}
        | {key for (name, key) in cycle.last if name == group_name}
        | {key for key in excluded if refusals.waiting(key)}
    )
    ceilings = [
        ceiling
        for ceiling in _outer_ceilings(group_name, cycle.config, cycle.observation, cycle.views)
        if ceiling.total >= group.curb_fraction * ceiling.maximum  # the others never curb (`_curb`)
    ]
    drafts = [_decide_entry(group_name, key, matched.demands.get(key), cycle, ceilings) for key in sorted(keys)]
    _note_refusals(group_name, drafts, refusals, cycle)
    _apply_cap([d for d in drafts if not d.withdrawn], _group_cap(group, _totals(cycle.views, group_name)))
    return drafts, matched, refusals


def _unreachable_sources(observation: Observation) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for problem in observation.problems:
        for group in problem.groups:
            found.setdefault(group, []).append(problem.source)
    return {group: tuple(dict.fromkeys(sources)) for group, sources in found.items()}


def _shapes_by_group(shapes: Iterable[JobShape]) -> dict[str, list[JobShape]]:
    found: dict[str, list[JobShape]] = {}
    for shape in shapes:
        found.setdefault(shape.group, []).append(shape)
    return found


def decide(observation: Observation, config: FrontendConfig, now: float) -> Plan:
    """The frontend's whole policy for one cycle: pure, deterministic, replayable."""
    views = _slot_views(observation.slots)
    cycle = _Cycle(
        observation=observation,
        config=config,
        now=now,
        entries={entry.key: entry for entry in observation.entries},
        views=views,
        unreachable=_unreachable_sources(observation),
        last={request.key: request for request in observation.published or ()},
        prospective=prospective_slots(observation.entries, observation.slots),
        streaks=feedback.by_group(observation.feedback),
    )
    shapes = _shapes_by_group(observation.shapes)
    drafts: list[_Draft] = []
    unmatched: dict[str, int] = {}
    in_downtime: dict[str, int] = {}
    unrunnable: dict[str, int] = {}
    streaks: list[RefusalStreak] = []
    for name in sorted(name for name, group in config.groups.items() if group.enabled):
        group_drafts, matched, refusals = _decide_group(name, shapes.get(name, []), cycle)
        drafts.extend(group_drafts)
        streaks.extend(refusals.streaks)
        unmatched[name], in_downtime[name] = matched.unmatched, matched.in_downtime
        unrunnable[name] = matched.unrunnable
    asking = [draft for draft in drafts if not draft.withdrawn]
    _share_health_caps(asking)
    _apply_cap(asking, _frontend_cap(config, _totals(views, None)))
    _apply_cap(asking, _pool_cap(config, observation))
    drafts.sort(key=lambda d: d.sort_key)
    return Plan(
        now=now,
        decisions=tuple(d.freeze() for d in drafts),
        unmatched=unmatched,
        in_downtime=in_downtime,
        unrunnable=unrunnable,
        problems=observation.problems,
        feedback=feedback.bounded(streaks),
    )
