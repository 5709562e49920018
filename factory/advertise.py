"""The factory's ads, as frontends and monitoring read them (schema in docs/protocol.md).

One entry ad per advertised entry (a standalone entry, or an entry set
standing for its members, see `updraft.factory.policy`), plus one factory
ad with the factory's totals. Pure: the ads come from the configuration
and the numbers the caller passes, so what a factory advertises can be
checked without a collector.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import asdict
from typing import Any

from updraft import protocol
from updraft.adnumbers import is_int
from updraft.factory import downtime
from updraft.factory.config import FactoryConfig
from updraft.factory.decide import count_pilots
from updraft.factory.health_model import EntryHealth
from updraft.factory.model import Pilot, PilotCounts
from updraft.factory.policy import AdvertisedEntry, advertised_entries, entries_in_downtime, entry_policies
from updraft.factory.slotad import advertised_slot

F_ENTRIES = "UpdraftEntries"
F_PILOTS_PREFIX = "UpdraftPilots"
"""Followed by the state in CamelCase: ``UpdraftPilotsIdle``, ``UpdraftPilotsStaleIdle`` ..."""
LIFETIME_CYCLES = 3
"""Ads outlive three cycles, so a factory that dies without withdrawing them is forgotten soon."""

_STATE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


def entry_ad(
    factory: FactoryConfig,
    entry: AdvertisedEntry,
    in_downtime: bool = False,
    totals: Mapping[str, int] | None = None,
    health: EntryHealth | None = None,
) -> dict[str, Any]:
    """One advertised entry: its published attributes, then the protocol's own (which win).

    `in_downtime` adds what the config's flag cannot know: a stored
    downtime active now (or, for a set, every member down). The pilots'
    prospective slot is announced as ``UpdraftSlot_*`` (`updraft.factory.slotad`).
    """
    slot = advertised_slot(factory, entry.name, entry.members)
    return {
        **entry.attributes,
        **{protocol.slot_attribute(name): value for name, value in slot.items()},
        "MyType": protocol.ENTRY_TYPE,
        "Name": protocol.entry_ad_name(entry.name, factory.name),
        "UpdraftSchema": protocol.SCHEMA,
        "ClassAdLifetime": LIFETIME_CYCLES * factory.cycle_seconds,
        protocol.E_FACTORY: factory.name,
        protocol.E_ENTRY: entry.name,
        protocol.E_GRID_TYPE: entry.grid_type,
        protocol.E_CPUS: entry.cpus_per_pilot,
        protocol.E_MAX_PILOTS: entry.limits.max_pilots,
        protocol.E_MAX_IDLE: entry.limits.max_idle,
        protocol.E_MAX_HELD: entry.limits.max_held,
        protocol.E_DOWNTIME: entry.downtime or in_downtime,
        **{pilots_attribute(state): _count(state, value) for state, value in sorted((totals or {}).items())},
        **health_attributes(health),
    }


def health_attributes(health: EntryHealth | None) -> dict[str, Any]:
    """The entry's health state, reason and since; its cap only when the state caps (banned: 0).

    Nothing when no health was decided (the ad then says nothing rather than "active")."""
    if health is None:
        return {}
    found: dict[str, Any] = {
        protocol.E_HEALTH: health.state.value,
        protocol.E_HEALTH_REASON: health.reason,
        protocol.E_HEALTH_SINCE: int(health.since),
    }
    if health.cap is not None:
        found[protocol.E_HEALTH_CAP] = health.cap
    return found


def entry_ads(
    factory: FactoryConfig,
    downtimes: Collection[str] = frozenset(),
    totals: Mapping[str, Mapping[str, int]] | None = None,
    health: Mapping[str, EntryHealth] | None = None,
) -> list[dict[str, Any]]:
    """Ads for every advertised entry, by name: enabled standalone entries and enabled entry sets.

    Disabled entries and the members of sets are not advertised at all.
    `downtimes` names the advertised entries in a stored downtime now
    (`updraft.factory.policy.entries_in_downtime`); they advertise
    ``UpdraftInDowntime = true`` like an entry whose config says so.
    `totals` gives each entry's pilots by state (as for `factory_ad`), the
    monitoring numbers frontends and dashboards read from the entry ad;
    `health` each entry's health this cycle (`health_attributes`).
    Raises TypeError if given anything but names (e.g. the `Downtime`
    records themselves), which would otherwise advertise no downtime at all.
    """
    # For untyped callers: mypy already refuses anything but names here.
    strays = [name for name in downtimes if not isinstance(name, str)]  # type: ignore[redundant-expr]
    if strays:
        raise TypeError(
            f"entry_ads takes the names of entries in downtime (see entries_in_downtime), got {strays[0]!r}"
        )
    totals, health = totals or {}, health or {}
    return [
        entry_ad(factory, entry, name in downtimes, totals.get(name), health.get(name))
        for name, entry in advertised_entries(factory).items()
    ]


def factory_ad(factory: FactoryConfig, totals: Mapping[str, int]) -> dict[str, Any]:
    """The factory's one global ad: who it is, how many entries it advertises, its pilots by state.

    `totals` maps snake_case states to counts, e.g. ``{"idle": 3,
    "stale_idle": 1}`` becomes ``UpdraftPilotsIdle = 3`` and
    ``UpdraftPilotsStaleIdle = 1``. Raises ValueError for a state that is
    not snake_case or a count that is not an int, since either would
    publish an attribute nobody can query by its documented name.
    """
    return {
        "MyType": protocol.FACTORY_TYPE,
        "Name": factory.name,
        "UpdraftSchema": protocol.SCHEMA,
        "ClassAdLifetime": LIFETIME_CYCLES * factory.cycle_seconds,
        protocol.E_FACTORY: factory.name,
        F_ENTRIES: len(advertised_entries(factory)),
        **{pilots_attribute(state): _count(state, value) for state, value in sorted(totals.items())},
    }


def pilots_attribute(state: str) -> str:
    """``stale_idle`` -> ``UpdraftPilotsStaleIdle``."""
    if not _STATE.fullmatch(state):
        raise ValueError(f"pilot state {state!r} is not a snake_case name")
    return F_PILOTS_PREFIX + "".join(word.capitalize() for word in state.split("_"))


def _count(state: str, value: int) -> int:
    if not is_int(value):
        raise ValueError(f"pilot total for {state!r} must be an int, got {value!r}")
    return value


REJECTED_ATTRIBUTE = "UpdraftRejectedRequests"
"""In the factory ad: requests refused in the last cycle (each is also logged once, with its reason)."""


def entry_totals(
    config: FactoryConfig, pilots: tuple[Pilot, ...] | None, downtimes: list[downtime.Downtime], now: float
) -> dict[str, dict[str, int]]:
    """Each advertised entry's pilots by state, stale ones included, as its ad publishes them."""
    policies = entry_policies(config, downtimes, now)
    by_entry: dict[str, list[Pilot]] = {name: [] for name in policies}
    for pilot in pilots or ():
        by_entry.setdefault(pilot.entry, []).append(pilot)
    return {name: _as_totals(count_pilots(by_entry[name], now, policy)) for name, policy in policies.items()}


def _as_totals(counts: PilotCounts) -> dict[str, int]:
    return {**asdict(counts), "idle": counts.idle}


def factory_totals(per_entry: dict[str, dict[str, int]]) -> dict[str, int]:
    """The sum over entries: the pilot numbers of the factory ad."""
    totals: Counter[str] = Counter()
    for counts in per_entry.values():
        totals.update(counts)
    return dict(totals)


def cycle_ads(
    config: FactoryConfig,
    downtimes: list[downtime.Downtime],
    pilots: tuple[Pilot, ...] | None,
    now: float,
    extra: Mapping[str, Any],
    health: Mapping[str, EntryHealth] | None = None,
) -> list[dict[str, Any]]:
    """Every entry ad and the global factory ad of one cycle; `extra` joins the factory ad (key, refusals),
    `health` the entry ads.

    Unknown pilots (an unreadable queue) publish no pilot numbers rather than zeros.
    """
    per_entry = entry_totals(config, pilots, downtimes, now) if pilots is not None else {}
    global_ad = {**factory_ad(config, factory_totals(per_entry)), **extra}
    return [*entry_ads(config, entries_in_downtime(config, downtimes, now), per_entry, health), global_ad]
