"""The factory's plain data: the pilots it sees, the policy of each entry, what it decides.

The HTCondor adapter turns the factory schedd's queue into `Pilot`s and the
request ads into `Request`s; the configuration becomes one `EntryPolicy` per
entry. The pure decision (`decide.py`) reads only these types, so a cycle
can be replayed offline, tested with tables and benchmarked alone, and the
policy never depends on how the config or the queue happen to be spelled.

Limits are ``int | None``: ``None`` means "no limit", and ``0`` really means
zero. Whoever builds an `EntryPolicy` from the config maps the protocol's
"0 = none" (docs/protocol.md) to ``None``, so that meaning lives in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from updraft.factory.cloud import CloudPlan
from updraft.factory.health_model import EntryHealth
from updraft.protocol import PilotParams, PublishedRequest, RemoveMode
from updraft.records import Step

# --------------------------------------------------------------------------
# What the factory observes
# --------------------------------------------------------------------------


class PilotState(str, Enum):
    """Where a pilot job is, as far as the factory's decision cares."""

    WAITING = "waiting"
    """Idle in the factory schedd, not yet handed to the CE (no GridJobId)."""
    PENDING = "pending"
    """Idle at the CE: the grid job is submitted and queued there."""
    STAGING = "staging"
    """Transferring files; about to run or just finished."""
    RUNNING = "running"
    HELD = "held"
    COMPLETED = "completed"
    REMOVED = "removed"
    """COMPLETED and REMOVED are on their way out of the queue: never counted, never acted on."""


IDLE_STATES = frozenset({PilotState.WAITING, PilotState.PENDING, PilotState.STAGING})
"""Pilots that have not started yet: what a request's `idle` is compared with."""

LIVE_STATES = IDLE_STATES | {PilotState.RUNNING, PilotState.HELD}
"""Pilots that count towards every limit and that the factory may act on."""


@dataclass(frozen=True, slots=True)
class Pilot:
    """One pilot job in the factory schedd's queue."""

    job_id: str
    """"cluster.proc"."""
    entry: str
    frontend: str
    group: str
    security_class: str
    credential_id: str
    state: PilotState
    entered_state: float
    """Epoch seconds it entered its current state (EnteredCurrentStatus): staleness is measured from it."""
    submitted: float
    """Epoch seconds it was submitted (QDate): "newest first" is measured by it."""
    hold_code: int | None = None
    """HoldReasonCode while HELD."""
    hold_subcode: int | None = None
    num_holds: int = 0
    """NumHolds: times it has been held, the current hold included (so releases so far = num_holds - 1)."""
    last_hold_time: float | None = None
    """Epoch seconds of the current hold; None falls back to `entered_state`."""
    member: str | None = None
    """For an entry set: the member CE this pilot went to (UpdraftMember)."""
    hold_reason: str = ""
    """While HELD: why, as an operator reads it (`updraft.factory.holds.readable_hold`)."""
    refusal: str | None = None
    """While HELD: the batch system's words when it refused the pilot for good (bad partition, more
    memory than a node has); such a hold recurs on every release (`updraft.factory.holds`)."""
    hold_kind: str = ""
    """While HELD: batch_refused, batch_unreachable or other (`updraft.factory.holds.HOLD_KINDS`)."""
    resource_unavailable_since: float | None = None
    """Epoch seconds since the grid manager finds the pilot's CE or batch system down; None while up."""
    batch_job_id: str = ""
    """A batch pilot's job id in the batch system (Slurm's job id), "" for other pilots or before it has one."""

    @property
    def key(self) -> tuple[str, str]:
        """(frontend, group): whose request this pilot serves on its entry."""
        return self.frontend, self.group


@dataclass(frozen=True, slots=True)
class PilotCounts:
    """One set of pilots counted by state; the stale counts are subsets of their state's."""

    waiting: int = 0
    pending: int = 0
    staging: int = 0
    running: int = 0
    held: int = 0
    stale_idle: int = 0
    stale_running: int = 0
    stale_held: int = 0

    @property
    def idle(self) -> int:
        return self.waiting + self.pending + self.staging

    @property
    def total(self) -> int:
        """Every live pilot: held ones too still occupy a place under max_pilots."""
        return self.idle + self.running + self.held


@dataclass(frozen=True, slots=True)
class Credential:
    """What a request's sealed credential opened to; the token never shows in a repr or a log."""

    credential_id: str
    """Names the token in the factory's store and in the pilots' job ads; not a secret."""
    identity: str
    """The identity the frontend sealed inside: must equal the collector's AuthenticatedIdentity."""
    token: str = field(repr=False)
    expires_at: int | None = None
    """The token's own ``exp`` claim (None: it never expires), read when the credential was opened."""
    authz: tuple[str, ...] = ()
    """What the token allows (its ``scope``), e.g. ``("ADVERTISE_STARTD",)``."""


@dataclass(frozen=True, slots=True)
class Request:
    """A frontend's request for one (entry, frontend, group), as the factory read it.

    Values are kept as the ad gave them (``remove`` is the raw string); the
    decision validates them and rejects what it cannot act on, so a bad ad is
    reported like any other refused request instead of failing the cycle.
    """

    entry: str
    frontend: str
    group: str
    security_class: str
    identity: str | None
    """AuthenticatedIdentity the collector attached: who really sent the ad."""
    idle: int
    max_pilots: int
    remove: str = RemoveMode.NONE.value
    remove_max: int = 0
    pilot: PilotParams = PilotParams()
    """What the frontend tells its pilots (pool, staging area, START); checked before any submission."""
    credential: Credential | None = None
    credential_problem: str | None = None
    """Why the sealed credential did not open (None: it opened, or none was sent)."""

    @property
    def key(self) -> tuple[str, str]:
        return self.frontend, self.group

    @classmethod
    def from_published(cls, ad: PublishedRequest, security_class: str | None = None) -> Request:
        """The protocol's request; `security_class`, if given, replaces the one the ad names.

        The override is for a factory that derives the class from something
        it trusts more than the ad's text (e.g. the credential it holds).
        """
        return cls(
            entry=ad.entry,
            frontend=ad.frontend,
            group=ad.group,
            security_class=ad.security_class if security_class is None else security_class,
            identity=ad.identity,
            idle=ad.idle,
            max_pilots=ad.max_pilots,
            remove=ad.remove,
            remove_max=ad.remove_max,
            pilot=ad.pilot,
        )

    def with_credential(self, credential: Credential | None, problem: str | None) -> Request:
        """This request with what its sealed credential opened to (or why it did not)."""
        return dataclasses.replace(self, credential=credential, credential_problem=problem)


# --------------------------------------------------------------------------
# An entry's policy
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on pilots at one level (the entry, or one frontend on it); None = no cap."""

    max_pilots: int | None = None
    max_idle: int | None = None
    max_held: int | None = None
    """Held pilots at which submission stops: many holds mean the site is failing pilots."""


@dataclass(frozen=True, slots=True)
class CycleCaps:
    """Most actions of each kind per cycle on one entry, so one bad cycle cannot flood a CE."""

    max_submits: int | None = None
    max_removals: int | None = None
    max_releases: int | None = None


@dataclass(frozen=True, slots=True)
class StaleAges:
    """Seconds in a state after which a pilot is considered stuck and removed; None = never."""

    idle_seconds: float | None = None
    running_seconds: float | None = None
    held_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class HoldPolicy:
    """Which holds are worth a release, how often, and how long to wait first.

    The wait doubles with every release (`backoff_seconds` * 2**releases so
    far, at most `max_backoff_seconds`), so a CE that keeps failing is not
    hammered while a transient failure still recovers quickly.
    """

    recoverable_codes: frozenset[int] = frozenset()
    max_releases: int = 0
    """Releases per pilot; a pilot held again after that many is removed."""
    backoff_seconds: float = 0.0
    max_backoff_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class FrontendAccess:
    """What a frontend allowed on an entry must prove, and what it may use."""

    identity: str
    """The AuthenticatedIdentity its request ads must carry."""
    security_classes: frozenset[str] = frozenset()
    require_credential: bool = False
    """The config's default is True; False here keeps decision tables that are not about credentials short."""


@dataclass(frozen=True)
class EntryPolicy:
    """Everything `decide` needs to know about one entry, independent of the config format."""

    name: str
    limits: Limits = Limits()
    frontend_limits: Mapping[str, Limits] = field(default_factory=dict)
    default_frontend_limits: Limits = Limits()
    """For allowed frontends not in `frontend_limits`."""
    per_cycle: CycleCaps = CycleCaps()
    cluster_size: int = 1
    """Pilots per submitted cluster: one submit transaction, one grid-manager batch."""
    stale: StaleAges = StaleAges()
    holds: HoldPolicy = HoldPolicy()
    in_downtime: bool = False
    frontends: Mapping[str, FrontendAccess] = field(default_factory=dict)
    """Frontends allowed on this entry; any other is rejected."""
    members: tuple[str, ...] | None = None
    """For an entry set: the member CEs new pilots may go to at the cycle's `now` (enabled, in no
    downtime), in configured order; () when none is. None: a standalone entry, its own only CE."""
    set_policy: str = "least_idle"
    """How an entry set spreads its pilots over `members` (`updraft.factory.policy.choose_members`)."""
    user_data_token_seconds: int | None = None
    """Cloud entries: the pilot token travels in the instance's user data, which anyone allowed to read
    the instance's attributes can read, so a token is accepted only if it allows nothing but
    ADVERTISE_STARTD and expires within this many seconds. None: the entry's pilots get no user data."""
    health: EntryHealth | None = None
    """The entry's health this cycle (`updraft.factory.health`): banned submits nothing, degraded caps
    the entry's idle pilots, probing its pilots in flight. None: no health decided (all sent)."""

    def __post_init__(self) -> None:
        if self.cluster_size < 1:
            raise ValueError(f"entry {self.name}: cluster_size must be at least 1, got {self.cluster_size}")

    def limits_for(self, frontend: str) -> Limits:
        return self.frontend_limits.get(frontend, self.default_frontend_limits)


# --------------------------------------------------------------------------
# What the factory decides
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submit:
    """New pilots for one (entry, frontend, group), in clusters of at most the entry's cluster_size."""

    entry: str
    frontend: str
    group: str
    security_class: str
    count: int
    clusters: tuple[int, ...]
    """The sizes of the clusters to submit, in order: act submits exactly these."""
    pilot: PilotParams = PilotParams()
    credential: Credential | None = None
    """The token these pilots join the VO pool with."""
    member: str | None = None
    """For an entry set, the member CE these pilots go to (one Submit per member); None for a
    standalone entry, which is its own CE."""

    @property
    def target(self) -> str:
        """The configured entry (CE) the pilots are rendered for and sent to."""
        return self.entry if self.member is None else self.member


@dataclass(frozen=True, slots=True)
class Remove:
    """Pilots to remove, all for one reason (the reason goes into the removal's log line)."""

    job_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Release:
    """Held pilots to release, each past its backoff."""

    job_ids: tuple[str, ...]


Action = Submit | Remove | Release


@dataclass(frozen=True, slots=True)
class EntryInputs:
    """What one (entry, frontend, group) decision was computed from, as named fields.

    Fields, not string keys: a misspelt name is an error where it is
    written (and for mypy), never a quiet 0. The request's own numbers are
    on `EntryDecision.request`.
    """

    pilots: PilotCounts = PilotCounts()
    """This (frontend, group)'s live pilots on the entry, by state, before this cycle's actions."""
    members: tuple[str, ...] = ()
    """For an entry set: the members its pilots could go to this cycle (`EntryPolicy.members`)."""
    idle_by_member: Mapping[str, int] = field(default_factory=dict)
    """Idle pilots queued at each of `members` (every frontend's), which `least_idle` spreads by."""


@dataclass(frozen=True)
class EntryDecision:
    """What the factory does for one (entry, frontend, group) this cycle, and why."""

    entry: str
    frontend: str
    group: str
    request: Request | None
    """The accepted request, or None: no request (or a rejected one) means no submissions."""
    actions: tuple[Action, ...] = ()
    inputs: EntryInputs = EntryInputs()
    steps: tuple[Step, ...] = ()
    bound_by: tuple[str, ...] = ()
    """Names of the limits that held a number below what was wanted, e.g. 'entry.max_idle' or
    'entry.max_removals' (the rule is in `updraft.records`)."""
    notes: tuple[str, ...] = ()

    @property
    def submitted(self) -> int:
        return sum(a.count for a in self.actions if isinstance(a, Submit))

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(job for a in self.actions if isinstance(a, Remove) for job in a.job_ids)

    @property
    def released(self) -> tuple[str, ...]:
        return tuple(job for a in self.actions if isinstance(a, Release) for job in a.job_ids)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A request the factory refused, and why in words fit for a log line."""

    request: Request
    reason: str


@dataclass(frozen=True)
class FactoryPlan:
    """A whole cycle: a decision per (entry, frontend, group), and the requests refused."""

    now: float
    decisions: tuple[EntryDecision, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    unmanaged: Mapping[str, int] = field(default_factory=dict)
    """Live pilots per entry that has no policy (unknown or dropped from the config): left alone."""
    cycle: int = 0
    """The cycle number decide was given: where round-robin entry sets started dealing."""
    cloud: CloudPlan = field(default_factory=CloudPlan)
    """The cloud entries' instances no pilot owns, and those to terminate (`updraft.factory.cloud`)."""

    @property
    def actions(self) -> tuple[Action, ...]:
        """Every action in decision order: what the act step executes."""
        return tuple(action for decision in self.decisions for action in decision.actions)
