"""Observe: one cycle's view of user jobs, pilot slots and factory entries.

All reads of a cycle run at once on a thread pool, each with its own
timeout, and each source that fails becomes a `SourceProblem` instead of
an exception: one slow schedd costs the cycle a timeout, not the cycle.
The functions that turn ads into model objects are pure and tested alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import classad2
import htcondor2

from updraft import adread, protocol, timefmt
from updraft.adnumbers import finite_number, is_number, whole_number, whole_or
from updraft.condor import Ad
from updraft.errors import CondorError
from updraft.factory.health_model import HealthState
from updraft.frontend.config import FrontendConfig, Group
from updraft.frontend.credentials import FactoryKey, parse_factory_key
from updraft.frontend.model import (
    AdvertisedHealth,
    EntryAd,
    JobShape,
    Observation,
    PilotSlot,
    SlotKind,
    SlotState,
    SourceProblem,
    pilot_state,
)
from updraft.frontend.ports import FrontendPorts
from updraft.frontend.restarts import RESTART_PROJECTION, RestartedJob, restart_constraint, restarted_job
from updraft.pilot_ad import JOB_STATUS, JobStatus
from updraft.ports import CollectorPort, SchedulerPort

log = logging.getLogger(__name__)

SIZE_ATTRS = ("RequestCpus", "RequestMemory")
_SLOT_BASICS: tuple[str, ...] = (
    "GLIDEIN_Entry_Name",
    "GLIDEIN_Factory",
    "GLIDECLIENT_Name",
    "GLIDECLIENT_Group",
    "State",
    "Activity",
    "Cpus",
    "Memory",
    "GLIDEIN_ToDie",
    "GLIDEIN_ToRetire",
    "Name",
    "GLIDEIN_Name",
    "GLIDEIN_Schedd",
    "GLIDEIN_ClusterId",
    "GLIDEIN_ProcId",
    "SlotType",
    "PartitionableSlot",
    "DynamicSlot",
    "TotalSlotCpus",
    "GLIDEIN_NodeIndex",
)
MACHINE_ATTRS = tuple(
    dict.fromkeys((*protocol.SLOT_ATTRIBUTES, "TotalSlotMemory", "TotalSlotDisk", "TotalSlotCpus", "TotalMemory"))
)
"""A live slot's machine attributes: what a new pilot of the same entry will most likely offer a job."""
SLOT_PROJECTION = tuple(dict.fromkeys((*_SLOT_BASICS, *MACHINE_ATTRS)))
"""What the frontend reads of a pilot slot: its origin, state and size, which glidein (and node) it belongs
to, and its machine attributes."""
IDLE, OLD_IDLE, RUNNING = "idle", "old_idle", "running"
BY_STATUS = "by_status"


# ----------------------------------------------------------------- pure parts


def _job_refs(expression: str) -> set[str]:
    """Job attributes an expression reads: MY.x or bare x (externalRefs gives "" for none)."""
    refs = classad2.ClassAd().externalRefs(classad2.ExprTree(expression))
    return {
        ref.split(".", 1)[1] if ref.upper().startswith("MY.") else ref
        for ref in refs
        if ref and not ref.upper().startswith("TARGET.")
    }


REQUIREMENT_ATTRS = ("Requirements", "RequestDisk", "FileSystemDomain", "UidDomain")
"""What a job's own Requirements usually read of the job itself, besides its size (HTCondor's default
Requirements compare Disk, Memory, FileSystemDomain with the slot's). Grouped on, so each shape has one
value of each. Other attributes a job's Requirements read are not projected: a term that reads one is
unknown, never a refusal. DiskUsage is left out: it differs per cluster and would split shapes, and
``RequestDisk = DiskUsage`` then leaves the disk term unknown."""


def _target_refs(expression: str) -> set[str]:
    """What an expression reads of TARGET (for pilot_start: of the job)."""
    refs = classad2.ClassAd().externalRefs(classad2.ExprTree(expression))
    return {ref.split(".", 1)[1] for ref in refs if ref.upper().startswith("TARGET.")}


def job_attributes(group: Group) -> tuple[str, ...]:
    """The job attributes that make two jobs the same shape for this group.

    They are what the match expression reads from the job (MY.x, or a bare x),
    the index attribute, and the job's size; the schedd groups jobs by them.
    With ``match_job_requirements`` also the job's Requirements and what they
    usually read (`REQUIREMENT_ATTRS`), and what ``pilot_start`` reads of it.
    """
    names = _job_refs(group.match_expr)
    if group.match_index is not None:
        names.add(group.match_index.job_attr)
    names.update(SIZE_ATTRS)
    if group.match_job_requirements:
        names.update(REQUIREMENT_ATTRS)
        if group.pilot_start:
            names.update(_target_refs(group.pilot_start))
    return tuple(sorted(names))


def shape_queries(group: Group, now: float) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The grouped queries a group needs per schedd: constraint and group-by attributes.

    HTCondor evaluates a GroupBy query's constraint on the grouped ads, which
    carry only the group-by attributes. So every attribute the constraint
    reads is grouped on too: each grouped ad then has one value of it, and
    the constraint is exact. Old idle jobs are also grouped by the time they
    became idle: one record per shape and second (in practice per submitted
    cluster), still never one per job.
    """
    shape = job_attributes(group)
    filters = tuple(sorted(_job_refs(group.job_constraint) - set(shape)))
    old = int(now - group.old_idle_seconds)
    return {
        BY_STATUS: (
            f"(JobStatus == 1 || JobStatus == 2) && ({group.job_constraint})",
            (*shape, *sorted({"JobStatus", *filters} - set(shape))),
        ),
        OLD_IDLE: (
            f"JobStatus == 1 && EnteredCurrentStatus < {old} && ({group.job_constraint})",
            (*shape, *sorted({"JobStatus", "EnteredCurrentStatus", *filters} - set(shape))),
        ),
    }


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def _kind(query: str, ad: Ad) -> str | None:
    if query == OLD_IDLE:
        return OLD_IDLE
    status = JobStatus.from_ad(ad.get(JOB_STATUS))
    if status is JobStatus.IDLE:
        return IDLE
    return RUNNING if status is JobStatus.RUNNING else None


def merge_shapes(group: str, schedd: str, results: Mapping[str, list[Ad]], attributes: Iterable[str]) -> list[JobShape]:
    """Fold the grouped ads of one schedd into shapes: equal `attributes`, summed counts."""
    attributes = tuple(attributes)
    totals: dict[tuple[tuple[str, Any], ...], dict[str, int]] = {}
    values: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}
    for query, ads in results.items():
        for ad in ads:
            kind = _kind(query, ad)
            if kind is None:
                continue
            attrs = {a: ad[a] for a in attributes if a in ad}
            key = tuple(sorted((k, _hashable(v)) for k, v in attrs.items()))
            values.setdefault(key, attrs)
            tally = totals.setdefault(key, {IDLE: 0, OLD_IDLE: 0, RUNNING: 0})
            tally[kind] += whole_or(ad.get("JobCount"), 0)
    return [
        JobShape(
            group,
            schedd,
            attrs,
            tally[IDLE],
            tally[OLD_IDLE],
            tally[RUNNING],
            cpus=max(1, whole_or(attrs.get("RequestCpus"), 1)),
            memory_mb=whole_or(attrs.get("RequestMemory"), 0),
        )
        for key, tally in totals.items()
        for attrs in (values[key],)
    ]


def slot_state(ad: Ad, now: float) -> SlotState:
    """Idle only if it could start a job now; a pilot past its retire time takes no new work."""
    state = ad.get("State")
    retire = ad.get("GLIDEIN_ToRetire")
    if state == "Claimed":
        return SlotState.RUNNING
    if is_number(retire) and retire <= now:
        return SlotState.RETIRING
    if state == "Unclaimed":  # Idle, or Benchmarking just after start: either way free for a job
        return SlotState.IDLE
    if state in ("Drained", "Preempting", "Backfill"):
        return SlotState.RETIRING
    return SlotState.FAILED


def pilot_id(ad: Ad) -> str:
    """The glidein a slot belongs to: the same for all its slots (a partitionable slot and its dynamic
    ones, fixed slots, each node of a multi-node pilot), different for every pilot.

    Every pilot advertises the factory's job id it runs as (GLIDEIN_ClusterId,
    GLIDEIN_ProcId, with GLIDEIN_Name and GLIDEIN_Schedd naming the factory
    instance and queue); without it, the startd's name (after the slot's
    "slotN@"). Empty when neither is there: the slot then counts alone.
    """
    cluster, proc = whole_number(ad.get("GLIDEIN_ClusterId")), whole_number(ad.get("GLIDEIN_ProcId"))
    if cluster is not None and proc is not None:
        origin = [str(ad.get(attr, "")) for attr in ("GLIDEIN_Factory", "GLIDEIN_Name", "GLIDEIN_Schedd")]
        return "/".join([*origin, f"{cluster}.{proc}"])
    name = ad.get("Name")
    if isinstance(name, str) and "@" in name:
        return "startd " + name.split("@", 1)[1]
    return ""


def slot_kind(ad: Ad) -> SlotKind:
    """Partitionable, dynamic or static, from SlotType or the older boolean attributes."""
    kind = ad.get("SlotType")
    if kind == "Partitionable" or ad.get("PartitionableSlot") is True:
        return SlotKind.PARTITIONABLE
    if kind == "Dynamic" or ad.get("DynamicSlot") is True:
        return SlotKind.DYNAMIC
    return SlotKind.STATIC


def parse_slot(ad: Ad, now: float) -> PilotSlot | None:
    """A pilot slot, or None when the startd does not say which entry it came from."""
    entry, factory = ad.get("GLIDEIN_Entry_Name"), ad.get("GLIDEIN_Factory")
    if not isinstance(entry, str) or not isinstance(factory, str):
        return None
    return PilotSlot(
        entry=entry,
        factory=factory,
        group=str(ad.get("GLIDECLIENT_Group", "")),
        state=slot_state(ad, now),
        cpus=whole_or(ad.get("Cpus"), 1),
        memory_mb=whole_or(ad.get("Memory"), 0),
        to_die=finite_number(ad.get("GLIDEIN_ToDie")),
        pilot=pilot_id(ad),
        kind=slot_kind(ad),
        total_cpus=max(0, whole_or(ad.get("TotalSlotCpus"), 0)),
        node=max(0, whole_or(ad.get("GLIDEIN_NodeIndex"), 0)),
        machine=tuple((name, ad[name]) for name in MACHINE_ATTRS if name in ad),
    )


def parse_entry(ad: Ad, trusted: Mapping[str, str]) -> tuple[EntryAd | None, str | None]:
    """The entry, or None and why it is ignored (unknown factory, wrong identity, malformed)."""
    label = repr(str(ad.get("Name"))[:80])
    factory = ad.get(protocol.E_FACTORY)
    if not isinstance(factory, str) or not isinstance(ad.get(protocol.E_ENTRY), str):
        return None, f"entry ad {label} lacks {protocol.E_FACTORY}/{protocol.E_ENTRY}"
    if factory not in trusted:
        return None, None
    identity = ad.get(protocol.IDENTITY)
    if identity != trusted[factory]:
        return (
            None,
            f"entry ad {label} came from {repr(identity)[:80]}, "
            f"factory {factory} is trusted only as {trusted[factory]!r}",
        )
    if whole_or(ad.get("UpdraftSchema"), -1) != protocol.SCHEMA:
        return None, f"entry ad {label}: UpdraftSchema {repr(ad.get('UpdraftSchema'))[:20]} is not {protocol.SCHEMA}"
    try:
        name = protocol.read_name(ad, protocol.E_ENTRY)
        numbers = {attr: _entry_number(ad, attr) for attr in _ENTRY_NUMBERS}
    except protocol.MalformedAd as err:
        return None, f"entry ad {label}: {err}"
    health, unhealthy = entry_health(ad)
    return EntryAd(
        name=name,
        factory=factory,
        attrs=dict(ad),
        cpus_per_pilot=max(1, numbers[protocol.E_CPUS]),
        nodes_per_pilot=max(1, numbers[protocol.E_NODES]),
        max_pilots=max(0, numbers[protocol.E_MAX_PILOTS]),  # a negative cap is no cap to honour
        max_idle=max(0, numbers[protocol.E_MAX_IDLE]),
        in_downtime=ad.get(protocol.E_DOWNTIME) is True,
        health=health,
    ), (f"entry ad {label}: {unhealthy}" if unhealthy else None)


HEALTH_REASON_CHARS = 300
"""The most of a health reason kept: one line for a record and `explain`, never a page."""


def entry_health(ad: Ad) -> tuple[AdvertisedHealth | None, str | None]:
    """The entry's advertised health, and what in it was unreadable (None: nothing).

    No ``UpdraftHealth`` is a factory that judges no health: None, read as
    active. A state that is not one of the four makes the whole health
    unknown, read as before factories had one (active), with a problem line:
    the factory enforces its own state anyway, so guessing "banned" would only
    starve an entry on a typo. A bad reason, time or cap costs only itself.
    """
    state = ad.get(protocol.E_HEALTH)
    if state is None:
        return None, None
    known = {s.value: s for s in HealthState}
    if not isinstance(state, str) or state.strip().lower() not in known:
        return None, f"{protocol.E_HEALTH} {repr(state)[:40]} is not one of {', '.join(known)}; entry read as active"
    problems: list[str] = []
    reason = ad.get(protocol.E_HEALTH_REASON, "")
    if not isinstance(reason, str):
        problems.append(f"{protocol.E_HEALTH_REASON} {repr(reason)[:40]} is not a string")
        reason = ""
    since = finite_number(ad.get(protocol.E_HEALTH_SINCE))
    if since is not None and not timefmt.is_time(since):
        since = None  # finite but no date (1e20): formatting it would stop the cycle
    if since is None and ad.get(protocol.E_HEALTH_SINCE) is not None:
        raw = repr(ad.get(protocol.E_HEALTH_SINCE))[:40]
        problems.append(f"{protocol.E_HEALTH_SINCE} {raw} is not a time in {timefmt.RANGE}")
    cap, bad_cap = _health_cap(ad.get(protocol.E_HEALTH_CAP))
    if bad_cap:
        problems.append(bad_cap)
    health = AdvertisedHealth(known[state.strip().lower()], _one_line(reason), since, cap)
    return health, ("; ".join(problems) or None)


def _health_cap(value: Any) -> tuple[int | None, str | None]:
    """The advertised cap (None: none), and why a value present was not read as one."""
    if value is None:
        return None, None
    cap = whole_number(value)
    if cap is None or not 0 <= cap <= protocol.MAX_COUNT:
        return None, f"{protocol.E_HEALTH_CAP} {repr(value)[:40]} is not a whole number in 0..{protocol.MAX_COUNT}"
    return cap, None


def _one_line(text: str) -> str:
    """A reason as one bounded line: control characters (newlines included) become spaces."""
    flat = "".join(c if c.isprintable() else " " for c in text[: HEALTH_REASON_CHARS + 1])
    return flat if len(flat) <= HEALTH_REASON_CHARS else flat[: HEALTH_REASON_CHARS - 3] + "..."


_ENTRY_NUMBERS = {protocol.E_CPUS: 1, protocol.E_NODES: 1, protocol.E_MAX_PILOTS: 0, protocol.E_MAX_IDLE: 0}
"""The entry's numbers the frontend uses, with what a missing or non-whole value reads as."""


def _entry_number(ad: Ad, attr: str) -> int:
    """The whole number in `attr` (its default when absent or not whole), or MalformedAd when it is
    beyond any real entry's: it would become a request the factory refuses, or a cap of 10^30."""
    value = whole_or(ad.get(attr), _ENTRY_NUMBERS[attr])
    if abs(value) > protocol.MAX_COUNT:
        raise protocol.MalformedAd(f"{attr} {str(value)[:24]} is outside 0..{protocol.MAX_COUNT}")
    return value


# ---------------------------------------------------------------- the adapter


@dataclass(frozen=True)
class _Outcome:
    """What one parallel read produced: model objects, or the problem that stopped it."""

    shapes: tuple[JobShape, ...] = ()
    slots: tuple[PilotSlot, ...] = ()
    pool_idle: int = 0
    pool_running: int = 0
    entries: tuple[EntryAd, ...] = ()
    problems: tuple[SourceProblem, ...] = ()
    keys: tuple[FactoryKey, ...] = ()
    published: tuple[protocol.PublishedRequest, ...] | None = None
    slots_unread: bool = False
    entries_unread: bool = False
    restarted: tuple[RestartedJob, ...] = ()
    restarts_unread: frozenset[str] = frozenset()


def observe(config: FrontendConfig, ports: FrontendPorts, now: float) -> Observation:
    """Read everything a cycle needs, in parallel; failures become problems, never zeros."""
    groups = {name: g for name, g in config.groups.items() if g.enabled}
    schedds, problems = _schedd_names(config, ports.vo, groups)
    reads: list[Callable[[], _Outcome]] = [
        lambda: _read_slots(ports.vo, config.name, now),
        lambda: _read_entries(ports.wms, config),
        lambda: _read_factory_keys(ports.wms, config),
        lambda: _read_published(ports.wms, config),
        *(_schedd_reader(ports.vo, schedd, groups, now) for schedd in schedds),
        *(_restarts_reader(ports.vo, schedd, groups) for schedd in schedds),
    ]
    outcomes = _run_all(reads)
    published = [o.published for o in outcomes if o.published is not None]
    return Observation(
        shapes=tuple(s for o in outcomes for s in o.shapes),
        entries=tuple(e for o in outcomes for e in o.entries),
        slots=tuple(s for o in outcomes for s in o.slots),
        problems=(*problems, *(p for o in outcomes for p in o.problems)),
        pool_idle_pilots=sum(o.pool_idle for o in outcomes),
        pool_running_pilots=sum(o.pool_running for o in outcomes),
        factory_keys={k.factory: k for o in outcomes for k in o.keys},
        published=published[0] if published else None,
        slots_unread=any(o.slots_unread for o in outcomes),
        entries_unread=any(o.entries_unread for o in outcomes),
        restarted=tuple(j for o in outcomes for j in o.restarted),
        restarts_unread=frozenset(g for o in outcomes for g in o.restarts_unread),
    )


def _run_all(reads: list[Callable[[], _Outcome]]) -> list[_Outcome]:
    """Every read at once: each waits in its own child process (`updraft.condor`), so they overlap."""
    with ThreadPoolExecutor(max_workers=min(16, len(reads)), thread_name_prefix="observe") as pool:
        futures: list[Future[_Outcome]] = [pool.submit(read) for read in reads]
        return [f.result() for f in futures]


def _schedd_names(
    config: FrontendConfig, vo: CollectorPort, groups: Mapping[str, Group]
) -> tuple[list[str], list[SourceProblem]]:
    if config.schedds:
        return list(config.schedds), []
    try:
        ads = vo.query(htcondor2.AdType.Schedd, "true", ["Name"])
    except CondorError as err:
        return [], [SourceProblem(f"collector {vo.address}", str(err), frozenset(groups), unreadable=True)]
    return sorted(str(ad["Name"]) for ad in ads if "Name" in ad), []


def _schedd_reader(vo: CollectorPort, schedd: str, groups: Mapping[str, Group], now: float) -> Callable[[], _Outcome]:
    def read() -> _Outcome:
        try:
            located = vo.schedd(schedd)
            shapes = [shape for name, group in groups.items() for shape in _group_shapes(located, name, group, now)]
        except CondorError as err:
            log.warning("schedd %s skipped this cycle: %s", schedd, err)
            return _Outcome(problems=(SourceProblem(f"schedd {schedd}", str(err), frozenset(groups), unreadable=True),))
        return _Outcome(shapes=tuple(shapes))

    return read


def _group_shapes(schedd: SchedulerPort, group_name: str, group: Group, now: float) -> list[JobShape]:
    results = {query: schedd.grouped(constraint, by) for query, (constraint, by) in shape_queries(group, now).items()}
    return merge_shapes(group_name, schedd.name, results, job_attributes(group))


def _read_slots(vo: CollectorPort, frontend: str, now: float) -> _Outcome:
    try:
        ads = vo.query(htcondor2.AdType.Startd, "IS_GLIDEIN =?= True", SLOT_PROJECTION)
    except CondorError as err:
        log.warning("pilot slots unknown this cycle: %s", err)
        problem = SourceProblem(f"collector {vo.address}", str(err), unreadable=True)
        return _Outcome(problems=(problem,), slots_unread=True)
    parsed = [(ad, parse_slot(ad, now)) for ad in ads]
    ours = tuple(slot for ad, slot in parsed if slot is not None and ad.get("GLIDECLIENT_Name") == frontend)
    states = _pool_pilot_states(ads, now)
    return _Outcome(
        slots=ours,
        pool_idle=sum(s is SlotState.IDLE for s in states),
        pool_running=sum(s is SlotState.RUNNING for s in states),
    )


def _pool_pilot_states(ads: Iterable[Ad], now: float) -> list[SlotState]:
    """Every pilot's state in the whole pool, every frontend's: one per glidein, not one per slot."""
    by_pilot: dict[str, list[SlotState]] = {}
    for index, ad in enumerate(ads):
        by_pilot.setdefault(pilot_id(ad) or f"#{index}", []).append(slot_state(ad, now))
    return [pilot_state(states) for states in by_pilot.values()]


KEY_PROJECTION = ("Name", protocol.E_FACTORY, protocol.IDENTITY, protocol.F_PUBLIC_KEY, protocol.F_KEY_ID)


def trusted_factories(config: FrontendConfig) -> dict[str, str]:
    """Each configured factory with the identity its ads must come from."""
    return {name: ref.identity for name, ref in config.factories.items()}


def _read_factory_keys(wms: CollectorPort, config: FrontendConfig) -> _Outcome:
    """The sealing key of each trusted factory, from its global ad, only if that factory sent it."""
    if config.pilot_tokens is None:
        return _Outcome()
    trusted = trusted_factories(config)
    return _read_trusted(wms, protocol.FACTORY_TYPE, trusted, KEY_PROJECTION, lambda ad: parse_factory_key(ad, trusted))


def entry_projection(config: FrontendConfig) -> tuple[str, ...]:
    """The entry attributes this frontend reads: the protocol's and those its groups match on.

    A match expression's TARGET.x and bare x (which ClassAd matching looks up
    in the entry when the job lacks it), and each match index's entry
    attribute."""
    wanted = set(protocol.ENTRY_PROJECTION)
    for group in config.groups.values():
        for ref in classad2.ClassAd().externalRefs(classad2.ExprTree(group.match_expr)):
            scope, _, name = ref.rpartition(".")
            if name and scope.upper() in ("", "TARGET"):
                wanted.add(name)
        if group.match_index is not None:
            wanted.add(group.match_index.entry_attr)
    return tuple(sorted(wanted))


def _read_entries(wms: CollectorPort, config: FrontendConfig) -> _Outcome:
    """Entry ads of trusted factories sent by those factories, projected; others are named, never read."""
    trusted = trusted_factories(config)
    return _read_trusted(
        wms, protocol.ENTRY_TYPE, trusted, entry_projection(config), lambda ad: parse_entry(ad, trusted)
    )


def _read_trusted(
    wms: CollectorPort,
    my_type: str,
    trusted: Mapping[str, str],
    projection: Iterable[str],
    parse: Callable[[Ad], tuple[Any, str | None]],
) -> _Outcome:
    """Ads of trusted factories (identity first, then name), projected, one unreadable ad costing
    only itself; ads under a trusted factory's name from another identity are a problem, not data."""
    try:
        read = adread.read_isolated(
            wms, my_type, adread.trusted_constraint(protocol.E_FACTORY, trusted), list(projection)
        )
    except CondorError as err:
        log.warning("%s ads unknown this cycle: %s", my_type, err)
        problem = SourceProblem(f"collector {wms.address}", str(err), unreadable=True)
        return _Outcome(problems=(problem,), entries_unread=my_type == protocol.ENTRY_TYPE)
    found, why_not = [], [*read.problems(my_type), *adread.impostors(wms, my_type, trusted, _factory_named)]
    for ad in read.ads:
        item, why = parse(ad)  # an item with a why: read, but part of the ad was not
        if item is not None:
            found.append(item)
        if why:
            why_not.append(why)
    problems = tuple(SourceProblem(f"collector {wms.address}", why) for why in why_not)
    if my_type == protocol.FACTORY_TYPE:
        return _Outcome(keys=tuple(found), problems=problems)
    return _Outcome(entries=tuple(found), problems=problems)


def _factory_named(ad_name: str) -> str:
    """The factory an entry ad's Name (entry@factory) or a factory ad's Name (factory) names."""
    return ad_name.rpartition("@")[2]


def ours(config: FrontendConfig) -> str:
    """The constraint that selects this frontend's request ads: sent by its identity (compared first,
    so nothing in another party's ad is evaluated) when the config names one."""
    if config.identity is None:
        return f"{protocol.R_FRONTEND} == {classad2.quote(config.name)}"
    return adread.trusted_constraint(protocol.R_FRONTEND, {config.name: config.identity})


def _read_published(wms: CollectorPort, config: FrontendConfig) -> _Outcome:
    """This frontend's requests as published now: what the cycle's new ones replace or withdraw."""
    try:
        read = adread.read_isolated(wms, protocol.REQUEST_TYPE, ours(config), protocol.REQUEST_PROJECTION)
    except CondorError as err:
        log.warning("published requests unknown this cycle: %s", err)
        return _Outcome(problems=(SourceProblem(f"collector {wms.address}", str(err), unreadable=True),))
    problems = tuple(SourceProblem(f"collector {wms.address}", why) for why in read.problems(protocol.REQUEST_TYPE))
    return _Outcome(
        published=tuple(r for r in map(protocol.parse_request, read.ads) if r is not None), problems=problems
    )


# ------------------------------------------------------------ restarted jobs


def _restarts_reader(vo: CollectorPort, schedd: str, groups: Mapping[str, Group]) -> Callable[[], _Outcome]:
    """One schedd's restarted jobs, one projected query per group (`updraft.frontend.restarts`).

    For monitoring only: a failure here names the schedd as a problem and
    leaves the groups' restart figures unknown, but never marks their job
    view incomplete (that is the shape queries' business, and decide's).
    """

    def read() -> _Outcome:
        try:
            located = vo.schedd(schedd)
            found = [
                job
                for name, group in groups.items()
                for ad in located.query(restart_constraint(group.job_constraint), RESTART_PROJECTION)
                for job in (restarted_job(name, ad),)
                if job is not None
            ]
        except CondorError as err:
            log.warning("restarted jobs of schedd %s unknown this cycle: %s", schedd, err)
            problem = SourceProblem(f"schedd {schedd}", f"restarted jobs: {err}", unreadable=True)
            return _Outcome(problems=(problem,), restarts_unread=frozenset(groups))
        return _Outcome(restarted=tuple(found))

    return read
