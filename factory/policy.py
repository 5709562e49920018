"""From the factory's configuration to what it advertises and the policy `decide` applies.

Pure: the config, the stored downtimes and ``now`` in, plain values out,
so the mapping is tested with tables and a cycle replays offline.

What is advertised ("advertised entries") is not the same as what is
configured under ``entries:``: an entry set (``entry_sets:``, a "metasite")
is advertised as ONE entry under its own name and spreads its pilots over
its members, which are never advertised on their own. Requests, pilots'
``UpdraftEntry`` and policies are all keyed by the advertised name; only
rendering a pilot's submit description looks at the member it goes to
(`member_entry`).

Zero is a real zero. `updraft.factory.model` leaves the meaning of "0" to
whoever builds an `EntryPolicy`; this config's limits and per-cycle caps
are plain non-negative numbers an operator writes, and ``max_idle: 0`` is
how an operator says "queue nothing here", so 0 stays 0. ``None`` (no
limit) appears only where the config itself says null (the per-frontend
limits and the stale ages).
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from updraft.factory.cloud import CloudAccount, CloudCredentials, CloudPolicy
from updraft.factory.config import (
    AllowedFrontend,
    Entry,
    EntryLimits,
    EntrySet,
    FactoryConfig,
    FrontendLimits,
    cpus_in,
    health_values,
)
from updraft.factory.credentials import open_credential
from updraft.factory.downtime import Downtime, active
from updraft.factory.gridtypes.cloud import CloudMachine
from updraft.factory.gridtypes.ec2 import Ec2Machine
from updraft.factory.health import HealthSettings
from updraft.factory.health_model import EntryHealth
from updraft.factory.model import (
    CycleCaps,
    EntryPolicy,
    FrontendAccess,
    HoldPolicy,
    Limits,
    Request,
    StaleAges,
)
from updraft.protocol import PublishedRequest

LEAST_IDLE = "least_idle"
ROUND_ROBIN = "round_robin"
SET_POLICIES = (LEAST_IDLE, ROUND_ROBIN)
_LIMIT_NAMES = ("max_pilots", "max_idle", "max_held")


@dataclass(frozen=True)
class AdvertisedEntry:
    """One entry as frontends see it: a standalone entry, or an entry set standing for its members.

    `members` are the configured entries pilots may go to, in configured
    order: the entry itself for a standalone entry, the set's enabled
    members for a set. `downtime` is the config's flag only; stored
    downtimes depend on the time and are applied by `entries_in_downtime`.
    """

    name: str
    attributes: Mapping[str, str | int | float | bool]
    limits: EntryLimits
    grid_type: str
    downtime: bool
    is_set: bool
    members: tuple[str, ...]
    frontends: Mapping[str, AllowedFrontend] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def cpus_per_pilot(self) -> int:
        """GLIDEIN_CPUS as frontends read it (anything but a positive integer means 1)."""
        return cpus_in(self.attributes)


# --------------------------------------------------------------------------
# What is advertised
# --------------------------------------------------------------------------


def set_members(config: FactoryConfig) -> frozenset[str]:
    """Every entry that belongs to a set, enabled or not: none of them is advertised alone."""
    return frozenset(member for entry_set in config.entry_sets.values() for member in entry_set.members)


def advertised_entries(config: FactoryConfig) -> dict[str, AdvertisedEntry]:
    """Every advertised entry by name, sorted: enabled standalone entries, then enabled sets merged in.

    A set whose members are all disabled is not advertised: there would be
    nowhere to send its pilots. A disabled set takes its members out of
    service with it, since members are never advertised alone.
    """
    hidden = set_members(config)
    advertised = {
        name: _standalone(name, entry) for name, entry in config.entries.items() if entry.enabled and name not in hidden
    }
    for name, entry_set in config.entry_sets.items():
        members = _enabled_members(config, entry_set)
        if entry_set.enabled and members:
            advertised[name] = _from_set(config, name, entry_set, members)
    return dict(sorted(advertised.items()))


def _standalone(name: str, entry: Entry) -> AdvertisedEntry:
    return AdvertisedEntry(
        name=name,
        attributes=entry.attributes,
        limits=entry.limits,
        grid_type=entry.grid_type,
        downtime=entry.downtime,
        is_set=False,
        members=(name,),
        frontends=entry.frontends,
    )


def _from_set(config: FactoryConfig, name: str, entry_set: EntrySet, members: tuple[str, ...]) -> AdvertisedEntry:
    """The set's own attributes, limits and frontends; the grid type of its first member.

    The first configured member, enabled or not, so that what the ad says
    does not change when an operator disables one CE.
    """
    return AdvertisedEntry(
        name=name,
        attributes=entry_set.attributes,
        limits=entry_set.limits,
        grid_type=config.entries[entry_set.members[0]].grid_type,
        downtime=entry_set.downtime,
        is_set=True,
        members=members,
        frontends=entry_set.frontends,
    )


def _enabled_members(config: FactoryConfig, entry_set: EntrySet) -> tuple[str, ...]:
    return tuple(member for member in entry_set.members if config.entries[member].enabled)


def member_entry(config: FactoryConfig, advertised_name: str, member: str) -> Entry:
    """The configured entry a pilot of `advertised_name` sent to `member` is rendered from.

    For a standalone entry the member is the entry itself. Raises KeyError
    for a name that is not configured or a member not in that set, so a
    pilot is never rendered for a CE its set does not include.
    """
    entry_set = config.entry_sets.get(advertised_name)
    if entry_set is not None:
        if member not in entry_set.members:
            raise KeyError(f"{member!r} is not a member of entry set {advertised_name!r}")
        return config.entries[member]
    if member != advertised_name:
        raise KeyError(f"{advertised_name!r} is not an entry set: its only member is itself, not {member!r}")
    try:
        return config.entries[advertised_name]
    except KeyError:
        raise KeyError(f"no entry or entry set named {advertised_name!r}") from None


# --------------------------------------------------------------------------
# Downtime
# --------------------------------------------------------------------------


def _member_down(config: FactoryConfig, member: str, downtimes: Sequence[Downtime], now: float) -> bool:
    return config.entries[member].downtime or active(downtimes, member, None, now) is not None


def available_members(
    config: FactoryConfig, advertised_name: str, downtimes: Sequence[Downtime], now: float
) -> tuple[str, ...]:
    """The members new pilots may go to now: enabled and in no downtime (flag or stored), in order.

    What `decide` spreads a set's pilots over (`EntryPolicy.members`). A
    member's downtime takes that CE out of the set's rotation; the set
    itself stays up while any member is left (see `in_downtime`).
    """
    entry = advertised_entries(config).get(advertised_name)
    if entry is None:
        return ()
    return _available(config, entry, downtimes, now)


def _available(
    config: FactoryConfig, entry: AdvertisedEntry, downtimes: Sequence[Downtime], now: float
) -> tuple[str, ...]:
    return tuple(m for m in entry.members if not _member_down(config, m, downtimes, now))


def in_downtime(config: FactoryConfig, entry: AdvertisedEntry, downtimes: Sequence[Downtime], now: float) -> bool:
    """The advertised entry as a whole is down: its flag, a stored downtime for it (every frontend),
    or, for a set, every one of its members down, since then its pilots have nowhere to go."""
    if entry.downtime or active(downtimes, entry.name, None, now) is not None:
        return True
    return entry.is_set and all(_member_down(config, m, downtimes, now) for m in entry.members)


def entries_in_downtime(config: FactoryConfig, downtimes: Sequence[Downtime], now: float) -> frozenset[str]:
    """Names of the advertised entries in downtime now: what `entry_ads` marks UpdraftInDowntime."""
    return frozenset(
        name for name, entry in advertised_entries(config).items() if in_downtime(config, entry, downtimes, now)
    )


def frontend_in_downtime(downtimes: Iterable[Downtime], entry: str, frontend: str, now: float) -> bool:
    """Whether a stored downtime stops `frontend` on `entry` now, so the service drops its requests.

    `EntryPolicy.in_downtime` is one flag for the whole entry and cannot
    say "down for cms only"; a downtime with a frontend is therefore
    applied before `decide`: the service leaves out that frontend's
    requests on the entry, which submits nothing for it and leaves its
    pilots alone, exactly as an entry-wide downtime does. True as well for
    an entry-wide stored downtime (harmless: the entry's policy is in
    downtime then anyway); the config's ``downtime`` flag is not seen here,
    it is in the policy.
    """
    return active(downtimes, entry, frontend, now) is not None


# --------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------


def entry_policies(config: FactoryConfig, downtimes: Sequence[Downtime], now: float) -> dict[str, EntryPolicy]:
    """One `EntryPolicy` per advertised entry name.

    A set uses its own limits, frontends and downtime, and the submit
    tuning, stale ages and hold policy of its first configured member: those
    describe how a CE is driven, the set has none of its own, and the first
    member is the one an operator lists as the reference. A set's policy
    also names its members available at `now` and how pilots are spread
    over them, so `decide` says which CE gets how many.
    """
    return {name: _policy(config, entry, downtimes, now) for name, entry in advertised_entries(config).items()}


def _policy(config: FactoryConfig, entry: AdvertisedEntry, downtimes: Sequence[Downtime], now: float) -> EntryPolicy:
    tuning = _tuning_entry(config, entry)
    return EntryPolicy(
        name=entry.name,
        limits=Limits(entry.limits.max_pilots, entry.limits.max_idle, entry.limits.max_held),
        frontend_limits=MappingProxyType(
            {name: frontend_limits(f.limits, entry.limits.per_frontend) for name, f in entry.frontends.items()}
        ),
        default_frontend_limits=frontend_limits(entry.limits.per_frontend),
        per_cycle=CycleCaps(
            max_submits=tuning.submit.max_submits_per_cycle,
            max_removals=tuning.submit.max_removals_per_cycle,
            max_releases=tuning.submit.max_releases_per_cycle,
        ),
        cluster_size=tuning.submit.cluster_size,
        stale=StaleAges(
            idle_seconds=_seconds(tuning.stale.idle_seconds),
            running_seconds=_seconds(tuning.stale.running_seconds),
            held_seconds=_seconds(tuning.stale.held_seconds),
        ),
        holds=HoldPolicy(
            recoverable_codes=frozenset(tuning.holds.recoverable_codes),
            max_releases=tuning.holds.max_releases,
            backoff_seconds=float(tuning.holds.backoff_seconds),
            max_backoff_seconds=float(tuning.holds.max_backoff_seconds),
        ),
        in_downtime=in_downtime(config, entry, downtimes, now),
        frontends=MappingProxyType(
            {
                name: FrontendAccess(f.identity, frozenset(f.security_classes), f.require_credential)
                for name, f in entry.frontends.items()
            }
        ),
        members=_available(config, entry, downtimes, now) if entry.is_set else None,
        set_policy=config.entry_sets[entry.name].policy if entry.is_set else LEAST_IDLE,
        user_data_token_seconds=_user_data_token_seconds(tuning),
    )


def health_settings(config: FactoryConfig) -> dict[str, HealthSettings]:
    """Each advertised entry's health policy: its own keys, else the factory's, else the built-in ones.

    Health is decided per advertised entry, so an entry set has one state
    (its members' pilots all count for it) and its own ``health:`` keys;
    its members' keys are not used, like their limits.
    """
    return {name: _health_settings(config, entry) for name, entry in advertised_entries(config).items()}


def _health_settings(config: FactoryConfig, entry: AdvertisedEntry) -> HealthSettings:
    own = config.entry_sets[entry.name].health if entry.is_set else config.entries[entry.name].health
    values = health_values(config.health, own)
    if "ignore_causes" in values:
        values["ignore_causes"] = frozenset(values["ignore_causes"])
    return HealthSettings(**values)


def with_health(policies: Mapping[str, EntryPolicy], health: Mapping[str, EntryHealth]) -> dict[str, EntryPolicy]:
    """The policies with each entry's health this cycle, which `decide` applies."""
    return {name: dataclasses.replace(policy, health=health.get(name)) for name, policy in policies.items()}


def _user_data_token_seconds(entry: Entry) -> int | None:
    """Entries whose pilots boot from user data (clouds) take a narrow token of bounded life, or none."""
    machine = entry.cloud
    return machine.max_token_lifetime_seconds if isinstance(machine, CloudMachine) else None


def _tuning_entry(config: FactoryConfig, entry: AdvertisedEntry) -> Entry:
    """The configured entry whose submit, stale and hold settings the policy uses."""
    if entry.is_set:
        return config.entries[config.entry_sets[entry.name].members[0]]
    return config.entries[entry.name]


def frontend_limits(limits: FrontendLimits, default: FrontendLimits | None = None) -> Limits:
    """A frontend's caps: each one it sets itself, else the entry's ``limits.per_frontend`` one.

    Per cap, so a frontend given only its own ``max_pilots`` keeps the
    entry's default ``max_idle``. Unset (None) means "as the default", not
    "no cap", so that dumping and reloading a config never changes what it
    means; where the default is unset too there is no cap. 0 stays zero.
    """
    return Limits(**{name: _own_or_default(limits, default, name) for name in _LIMIT_NAMES})


def _own_or_default(limits: FrontendLimits, default: FrontendLimits | None, name: str) -> int | None:
    own: int | None = getattr(limits, name)
    if own is not None or default is None:
        return own
    fallback: int | None = getattr(default, name)
    return fallback


def _seconds(value: int | None) -> float | None:
    return None if value is None else float(value)


# --------------------------------------------------------------------------
# Spreading a set's pilots over its members
# --------------------------------------------------------------------------


def choose_members(
    count: int, members: Sequence[str], idle_by_member: Mapping[str, int], policy: str, start: int = 0
) -> dict[str, int]:
    """How many of `count` new pilots of a set go to each member; members given none are left out.

    - ``least_idle``: each pilot in turn goes to the member with the fewest
      idle pilots, counting those already given this cycle; ties go to the
      earlier member. A CE that starts pilots quickly keeps few idle and so
      gets more, a slow or broken one stops getting any.
    - ``round_robin``: pilots are dealt one each, starting at member
      ``start`` (mod the member count); `decide` passes the cycle number so
      the first member does not always get the odd pilot.

    `members` are distinct names; a member missing from `idle_by_member` has
    no idle pilots. Deterministic, so a recorded cycle replays exactly.
    Raises ValueError for a negative count, an unknown policy, or pilots to
    place with no member to place them on.
    """
    if count < 0:
        raise ValueError(f"cannot place a negative number of pilots ({count})")
    if policy not in SET_POLICIES:
        raise ValueError(f"unknown entry set policy {policy!r} (expected one of {', '.join(SET_POLICIES)})")
    if count == 0:
        return {}
    if not members:
        raise ValueError(f"{count} pilots to place but no member to place them on")
    if policy == LEAST_IDLE:
        counts = _least_idle(count, members, idle_by_member)
    else:
        counts = _round_robin(count, len(members), start)
    return {member: n for member, n in zip(members, counts, strict=True) if n > 0}


def _least_idle(count: int, members: Sequence[str], idle_by_member: Mapping[str, int]) -> list[int]:
    """A heap of (idle so far, member index): the smallest index breaks ties, as documented."""
    given = [0] * len(members)
    heap = [(idle_by_member.get(member, 0), index) for index, member in enumerate(members)]
    heapq.heapify(heap)
    for _ in range(count):
        idle, index = heapq.heappop(heap)
        given[index] += 1
        heapq.heappush(heap, (idle + 1, index))
    return given


def _round_robin(count: int, size: int, start: int) -> list[int]:
    """Every member gets count // size; the count % size left over go to the members from `start` on."""
    whole, rest = divmod(count, size)
    first = start % size
    return [whole + (1 if (index - first) % size < rest else 0) for index in range(size)]


def accepted_requests(
    published: Iterable[PublishedRequest],
    factory: str,
    downtimes: list[Downtime],
    now: float,
    openers: Mapping[str, X25519PrivateKey],
) -> list[Request]:
    """Requests as the decision sees them, their credentials opened with `openers` (the keyring's keys
    at `now`); a frontend in its own downtime asks for nothing."""
    return [
        Request.from_published(r, r.security_class).with_credential(*open_credential(r, openers, factory))
        for r in published
        if not frontend_in_downtime(downtimes, r.entry, r.frontend, now)
    ]


def cloud_policies(config: FactoryConfig) -> dict[str, CloudPolicy]:
    """Every configured ec2 entry's rules for instances no pilot owns, enabled or not: an instance
    tagged with a disabled entry is still that entry's."""
    return {
        name: CloudPolicy(machine.unknown_instance_grace_seconds, machine.terminate_unknown_after_seconds)
        for name, entry in config.entries.items()
        if isinstance(machine := entry.cloud, Ec2Machine)
    }


def cloud_accounts(config: FactoryConfig) -> tuple[dict[CloudAccount, tuple[str, ...]], list[str]]:
    """Each distinct (endpoint, credentials) the enabled ec2 entries use, with those entries; and a
    problem per enabled ec2 entry without key files (its instances cannot be listed)."""
    accounts: dict[CloudAccount, tuple[str, ...]] = {}
    problems = []
    for name, entry in config.entries.items():
        machine = entry.cloud
        if not entry.enabled or not isinstance(machine, Ec2Machine):
            continue
        if machine.access_key_file is None or machine.secret_key_file is None:
            problems.append(f"entry {name}: no access_key_file and secret_key_file, its instances cannot be listed")
            continue
        account = CloudAccount(entry.resource, CloudCredentials(machine.access_key_file, machine.secret_key_file))
        accounts[account] = (*accounts.get(account, ()), name)
    return accounts, problems
