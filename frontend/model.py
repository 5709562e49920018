"""The frontend's plain data: what it observes and what it decides.

Observation types come out of the HTCondor adapter (`observe.py`) and go
into the pure decision (`decide.py`); nothing here knows HTCondor. Keeping
them plain and frozen is what lets a cycle be replayed offline, tested with
tables, and benchmarked alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

from updraft import timefmt
from updraft.factory.health_model import HealthState
from updraft.protocol import (
    PublishedRequest,
    RemoveMode,
)
from updraft.records import Step


@dataclass(frozen=True, slots=True)
class JobShape:
    """Identical jobs of one group in one schedd, as the schedd grouped them.

    `attrs` holds the job attributes the group's match expression (and match
    index) refer to; two jobs with equal `attrs` are the same shape.
    """

    group: str
    schedd: str
    attrs: Mapping[str, Any]
    idle: int = 0
    old_idle: int = 0
    running: int = 0
    cpus: int = 1
    memory_mb: int = 0


def shape_key(shape: JobShape) -> str:
    """A shape's name across cycles and schedds: its group and attributes, never its schedd or counts.

    A short digest, so memory that keys on shapes (`updraft.frontend.feedback`) stays small.
    """
    parts = [shape.group]
    for name, value in sorted(shape.attrs.items()):
        parts.append(name.lower())
        parts.append(repr(value) if value.__class__ in _REPR_TELLS_TYPE else _spelled(value))
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=10).hexdigest()


_REPR_TELLS_TYPE = frozenset((str, int, float, bool))
"""Types whose repr differs from every other's: 1, 1.0, True and '1' are spelled apart."""


def _spelled(value: Any) -> str:
    """A value as text that differs whenever the value does (its type included), never starting as a
    repr of `_REPR_TELLS_TYPE` does."""
    text = getattr(value, "text", None)  # `updraft.condor.Expression`: the expression as written
    if isinstance(text, str):
        return "expr:" + text
    return f"{value.__class__.__name__}:{value!r}"


@dataclass(frozen=True, slots=True)
class AdvertisedHealth:
    """An entry's health as its factory advertises it (``UpdraftHealth*``, docs/protocol.md).

    The factory decides the state; the frontend only follows it: no demand on
    a banned entry, requests within the cap of a degraded or probing one.
    """

    state: HealthState
    reason: str = ""
    since: float | None = None
    """Epoch seconds the entry entered `state`; None when the ad did not say (or said nonsense)."""
    cap: int | None = None
    """Most idle pilots the factory keeps queued for the entry in this state; None caps nothing."""

    @property
    def banned(self) -> bool:
        return self.state is HealthState.BANNED

    def described(self) -> str:
        """What records, `explain` and ``--unmatched`` say, e.g. 'banned since 2026-12-06T09:00:00Z: <reason>'."""
        since = "" if self.since is None else " since " + timefmt.utc(self.since, timefmt.ISO)
        return f"{self.state.value}{since}" + (f": {self.reason}" if self.reason else "")


@dataclass(frozen=True, slots=True)
class EntryAd:
    """A factory entry as its factory advertises it in the WMS collector."""

    name: str
    factory: str
    attrs: Mapping[str, Any]
    cpus_per_pilot: int = 1
    """Per node: the most one job can use."""
    max_pilots: int = 0
    max_idle: int = 0
    in_downtime: bool = False
    nodes_per_pilot: int = 1
    """GLIDEIN_Nodes: a multi-node pilot brings this many nodes of `cpus_per_pilot` each."""
    health: AdvertisedHealth | None = None
    """None: the factory advertised no health (read as active, as before factories had one)."""

    @property
    def takes_no_pilots(self) -> bool:
        """In downtime or banned: no demand is placed here while another entry takes the jobs."""
        return self.in_downtime or (self.health is not None and self.health.banned)

    @property
    def health_state(self) -> HealthState:
        return HealthState.ACTIVE if self.health is None else self.health.state

    @property
    def cores_per_pilot(self) -> int:
        return self.cpus_per_pilot * self.nodes_per_pilot

    @property
    def key(self) -> str:
        """Unique across factories: entry names are only unique within one."""
        return f"{self.name}@{self.factory}"


class SlotState(str, Enum):
    IDLE = "idle"
    RUNNING = "running"
    RETIRING = "retiring"
    FAILED = "failed"


class SlotKind(str, Enum):
    """HTCondor's slot types: a partitionable slot holds the pilot's cores, its dynamic slots are carved out of it."""

    STATIC = "static"
    PARTITIONABLE = "partitionable"
    DYNAMIC = "dynamic"


@dataclass(frozen=True, slots=True)
class PilotSlot:
    """One pilot slot (a glidein startd's slot) in the VO collector."""

    entry: str
    factory: str
    group: str
    state: SlotState
    cpus: int
    memory_mb: int
    to_die: float | None = None
    """Epoch seconds when the pilot dies (GLIDEIN_ToDie); None if it did not say."""
    pilot: str = ""
    """Which glidein the slot belongs to (`updraft.frontend.observe.pilot_id`): every slot of one pilot
    (a partitionable slot and its dynamic slots, each node of a multi-node pilot) says the same.
    Empty: unknown, the slot counts as a pilot of its own."""
    kind: SlotKind = SlotKind.STATIC
    total_cpus: int = 0
    """A partitionable slot's TotalSlotCpus (its `cpus` are what is left unclaimed); 0: same as `cpus`."""
    node: int = 0
    """GLIDEIN_NodeIndex: which node of a multi-node pilot the slot's startd runs on (0 for one node)."""
    machine: tuple[tuple[str, Any], ...] = ()
    """The slot's machine attributes (`updraft.frontend.observe.MACHINE_ATTRS`) as (name, value) pairs:
    what a job's Requirements read, for the prospective slot of its entry (`updraft.frontend.prospective`)."""

    @property
    def entry_key(self) -> str:
        return f"{self.entry}@{self.factory}"

    @property
    def cores(self) -> int:
        """The cores this slot holds for its pilot: a dynamic slot's are already its partitionable slot's."""
        if self.kind is SlotKind.PARTITIONABLE:
            return max(self.total_cpus, self.cpus)
        return self.cpus


_PILOT_STATE_ORDER = (SlotState.RUNNING, SlotState.RETIRING, SlotState.IDLE, SlotState.FAILED)


def pilot_state(states: Iterable[SlotState]) -> SlotState:
    """One pilot's state from its slots': running if any slot runs a job, idle only if none is busy or leaving.

    A partitionable slot stays Unclaimed while its dynamic slots run jobs, so
    "any slot idle" would call a working pilot idle.
    """
    seen = set(states)
    if len(seen) == 1:  # the usual case: one slot, or all alike
        return seen.pop()
    return next((state for state in _PILOT_STATE_ORDER if state in seen), SlotState.FAILED)


def slots_by_pilot(slots: Iterable[PilotSlot]) -> dict[str, list[PilotSlot]]:
    """Slots grouped by the glidein they belong to; a slot whose pilot is unknown is a pilot of its own."""
    found: dict[str, list[PilotSlot]] = {}
    for index, slot in enumerate(slots):
        found.setdefault(slot.pilot or f"#{index}", []).append(slot)
    return found


def pilot_cores(slots: Iterable[PilotSlot]) -> int:
    """A pilot's cores: each node's, summed (a multi-node pilot runs a startd per node)."""
    if isinstance(slots, (list, tuple)) and len(slots) == 1:
        return slots[0].cores
    by_node: dict[int, list[PilotSlot]] = {}
    for slot in slots:
        by_node.setdefault(slot.node, []).append(slot)
    return sum(_node_cores(mine) for mine in by_node.values())


def _node_cores(chosen: list[PilotSlot]) -> int:
    """One startd's cores: its partitionable slots' totals and static slots' cores; dynamic slots count only
    when their partitionable slot's ad is not there (they are carved out of it, never added to it)."""
    whole = [s for s in chosen if s.kind is not SlotKind.DYNAMIC]
    has_partitionable = any(s.kind is SlotKind.PARTITIONABLE for s in chosen)
    carved = [] if has_partitionable else [s for s in chosen if s.kind is SlotKind.DYNAMIC]
    return sum(s.cores for s in whole) + sum(s.cpus for s in carved)


@dataclass(frozen=True, slots=True)
class SourceProblem:
    """A schedd or collector that could not be read this cycle, and why."""

    source: str
    message: str
    groups: frozenset[str] = frozenset()
    """Groups whose job view is incomplete because of it (empty for collectors)."""
    unreadable: bool = False
    """The source could not be read at all (not: it was read and some of its ads were ignored)."""


class RefusalStreak(NamedTuple):
    """Consecutive cycles in which an entry's usable idle pilots of a group left a shape's jobs idle there.

    A cycle of such evidence extends the streak; one without ends it, unless
    the pair is excluded already: then it stays excluded until
    `idle_feedback.hold_seconds` after `last` (`updraft.frontend.feedback`).
    A named tuple, not a frozen dataclass: a cycle builds one per (entry, shape) with evidence,
    thousands in a large pool, and a tuple is built three times faster.
    """

    group: str
    entry: str
    """The entry's key (name@factory)."""
    shape: str
    """`shape_key` of the refused shape."""
    cycles: int
    since: float
    """Epoch seconds of the streak's first evidence."""
    last: float
    """Epoch seconds of its latest evidence."""
    excluded_since: float | None = None
    """When the pair stopped counting as demand on the entry; None while it still counts."""

    @property
    def pair(self) -> tuple[str, str, str]:
        return (self.group, self.entry, self.shape)


@dataclass(frozen=True, slots=True)
class FeedbackMemory:
    """What idle pilots taught the frontend in earlier cycles: the refusal streaks, one per
    (group, entry, shape) with evidence, sorted by `RefusalStreak.pair`.

    Carried from one `Plan` to the next `Observation` by the service loop (and
    kept in the frontend's work_dir), because `decide` is pure and has no
    memory of its own.
    """

    streaks: tuple[RefusalStreak, ...] = ()


@dataclass(frozen=True)
class Observation:
    """Everything one cycle saw, at one time."""

    shapes: tuple[JobShape, ...] = ()
    entries: tuple[EntryAd, ...] = ()
    slots: tuple[PilotSlot, ...] = ()
    problems: tuple[SourceProblem, ...] = ()
    pool_idle_pilots: int = 0
    """Idle pilot slots in the whole VO pool, every frontend's."""
    pool_running_pilots: int = 0
    factory_keys: Mapping[str, Any] = field(default_factory=dict)
    """Per trusted factory, the key it seals credentials to (`updraft.frontend.credentials.FactoryKey`)."""
    published: tuple[PublishedRequest, ...] | None = None
    """This frontend's requests as the WMS collector held them; None when it could not be read."""
    slots_unread: bool = False
    """The VO collector's pilot slots could not be read: how many pilots there are is unknown, not zero."""
    entries_unread: bool = False
    """The factories' entry ads could not be read: which entries exist is unknown, not "none"."""
    restarted: tuple[Any, ...] = ()
    """Queued jobs that started more than once (`updraft.frontend.restarts.RestartedJob`), for monitoring only."""
    restarts_unread: frozenset[str] = frozenset()
    """Groups whose restarted jobs could not all be read (a schedd failed): their restart figures are unknown."""
    feedback: FeedbackMemory = FeedbackMemory()
    """The previous cycle's `Plan.feedback` (empty on a first cycle): not observed, remembered."""

    @property
    def incomplete_groups(self) -> frozenset[str]:
        return frozenset(g for p in self.problems for g in p.groups)


class DecisionInputs(NamedTuple):
    """What one (group, entry) decision was computed from, as named fields.

    A field, not a string key: a misspelt name is an error where it is
    written (and for mypy), never a quiet 0 in an ad or a graph. Job counts
    are real (a shape matching several entries is split between them);
    slot counts are whole. A named tuple, built once per decision: three
    times faster to build than a frozen dataclass of this many fields.
    """

    idle_jobs: float = 0.0
    old_idle_jobs: float = 0.0
    running_jobs: float = 0.0
    idle_pilots_needed: float = 0.0
    """The matching idle jobs as pilot-equivalents (cores per pilot)."""
    old_idle_pilots: float = 0.0
    pilots: int = 0
    """This group's pilots from this entry: one per glidein, however many slots (and nodes) it has."""
    idle_pilots: int = 0
    """Of `pilots`, those with no slot busy: what the idle maxima count."""
    idle_slots: int = 0
    usable_idle_slots: int = 0
    """Of `idle_slots`, those that fit a waiting job and live long enough: the capacity the need subtracts."""
    busy_slots: int = 0
    """Pilots (not slots) with a slot that is not idle: the ones ALL removal may take."""
    running_slots: int = 0
    """Pilots running a job (one per glidein)."""
    failed_slots: int = 0
    """Pilots whose every slot failed."""
    pilot_cores: int = 0
    """Cores of these pilots: a partitionable slot's total, never again its dynamic slots'."""
    ramp_up_attenuation: float = 1.0
    reserve_idle: int = 0
    max_pilots: int = 0
    """The entry's pilot maximum for this group (the lower of the group's and the factory's)."""
    max_idle: int = 0
    refused_idle_jobs: float = 0.0
    """Idle jobs of shapes not counted on this entry because its idle pilots kept refusing them
    (`updraft.frontend.feedback`); they are not in `idle_jobs`. A job refused on n entries counts on each."""


class Decision(NamedTuple):
    """The request for one (group, entry) and the record of why (a named tuple: one per decision,
    thousands a cycle)."""

    group: str
    entry: EntryAd
    idle: int
    max_pilots: int
    remove: RemoveMode = RemoveMode.NONE
    remove_max: int = 0
    inputs: DecisionInputs = DecisionInputs()
    steps: tuple[Step, ...] = ()
    bound_by: tuple[str, ...] = ()
    """Names of the limits or curbs that held the request below what was wanted, e.g.
    'group.max_idle_per_entry' (the rule is in `updraft.records`)."""
    notes: tuple[str, ...] = ()
    held_since: float | None = None
    """Set when data this request depends on is missing: the request is the last good one, kept
    unlowered and without removal, and this is when the data was last complete."""
    withdrawn: bool = False
    """No request is published for it (data missing for longer than `hold_last_request_seconds`, or an
    entry not advertised with no good request to keep): the factory then submits and removes nothing."""


@dataclass(frozen=True)
class Plan:
    """A whole cycle's decisions, plus what matched nothing."""

    now: float
    decisions: tuple[Decision, ...] = ()
    unmatched: Mapping[str, int] = field(default_factory=dict)
    """Idle jobs per group that no entry matched."""
    in_downtime: Mapping[str, int] = field(default_factory=dict)
    """Idle jobs per group whose only matching entries take no pilots: in downtime or banned
    (`EntryAd.takes_no_pilots`)."""
    unrunnable: Mapping[str, int] = field(default_factory=dict)
    """Of `unmatched`, idle jobs per group that some entry's match_expr takes but whose own Requirements (or
    the group's pilot_start) are false on every such entry's pilots: no pilot could ever run them."""
    problems: tuple[SourceProblem, ...] = ()
    feedback: FeedbackMemory = FeedbackMemory()
    """The refusal streaks after this cycle: the next cycle's `Observation.feedback`."""
