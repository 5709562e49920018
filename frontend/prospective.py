"""The slot a pilot of an entry will offer, as a job's Requirements will see it.

The negotiator evaluates every job's own ``Requirements`` against each
pilot slot; a job that asks for 4 TB of memory, or for the submit host's
filesystem, can never run on a grid pilot, and pilots requested for it sit
idle. Before asking for pilots the frontend therefore evaluates the job's
Requirements against the slot it expects:

- the entry's own description, which the factory advertises as
  ``UpdraftSlot_<attribute>`` (`updraft.protocol.SLOT_ATTRIBUTES`), only the
  attributes it really knows;
- over that, when the entry already has pilot slots in the VO pool, a real
  slot's attributes: what the site's nodes really advertise beats what the
  factory's configuration says. A partitionable slot's ``Memory`` and
  ``Cpus`` are what is left unclaimed, so its totals stand in for them.

Attributes neither source knows stay absent: a term of the job's
Requirements that reads one is unknown, never a refusal (`updraft.frontend.terms`).
Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from updraft import protocol
from updraft.frontend.model import EntryAd, PilotSlot, SlotKind

_TOTALS = (("Memory", "TotalSlotMemory"), ("Cpus", "TotalSlotCpus"), ("Disk", "TotalSlotDisk"))
"""A partitionable slot's whole size: what a job matched against a new pilot would find free."""


def advertised_slot(entry: EntryAd) -> dict[str, Any]:
    """The entry's description of its pilots' slots: its ``UpdraftSlot_*`` attributes, prefix removed
    (those of `updraft.protocol.SLOT_ATTRIBUTES`, as the factory spells them: the frontend projects only those)."""
    return protocol.prospective_slot(entry.attrs)


def _whole_slot(slot: PilotSlot) -> dict[str, Any]:
    attrs = dict(slot.machine)
    if slot.kind is SlotKind.PARTITIONABLE:
        for name, total in _TOTALS:
            if total in attrs:
                attrs[name] = attrs[total]
    return attrs


def _size(slot: PilotSlot) -> tuple[int, int, str]:
    """Cores, then memory, then the pilot's name: the largest slot wins, the same one every cycle
    (a partitionable slot's memory is what is left unclaimed: good enough to choose by)."""
    return slot.cores, slot.memory_mb, slot.pilot


def _largest_whole_slots(slots: Iterable[PilotSlot]) -> dict[tuple[str, str], PilotSlot]:
    """Each entry's largest slot that has machine attributes, by (entry name, factory): the one slot whose
    ad stands for the entry's pilots. Dynamic slots are parts of others; `_size` orders the rest.

    The single place of this rule, for decide (`prospective_slots`) and explain (`live_slot`) alike;
    one pass, because a pool has many more slots than entries."""
    largest: dict[tuple[str, str], tuple[tuple[int, int, str], PilotSlot]] = {}
    for slot in slots:
        if slot.kind is SlotKind.DYNAMIC or not slot.machine:
            continue
        where, size = (slot.entry, slot.factory), _size(slot)
        found = largest.get(where)
        if found is None or size > found[0]:
            largest[where] = (size, slot)
    return {where: slot for where, (_, slot) in largest.items()}


def live_slot(slots: Iterable[PilotSlot]) -> dict[str, Any] | None:
    """The machine attributes of the entry's largest live slot (`_largest_whole_slots`' choice; slots of
    several entries: the largest of all)."""
    largest = _largest_whole_slots(slots).values()
    return _whole_slot(max(largest, key=_size)) if largest else None


def prospective_slot(entry: EntryAd, live: Iterable[PilotSlot] = ()) -> dict[str, Any]:
    """What a pilot of `entry` will offer: the entry's description, overridden by a live slot's ad."""
    return {**advertised_slot(entry), **(live_slot(live) or {})}


def prospective_slots(entries: Iterable[EntryAd], slots: Iterable[PilotSlot]) -> dict[str, Mapping[str, Any]]:
    """Every entry's prospective slot, by entry key, live slots of any group counted
    (each entry's the one `prospective_slot` gives for its own slots)."""
    largest = _largest_whole_slots(slots)
    found_slots: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        live = largest.get((entry.name, entry.factory))
        found_slots[entry.key] = {**advertised_slot(entry), **_whole_slot(live)} if live else advertised_slot(entry)
    return found_slots
