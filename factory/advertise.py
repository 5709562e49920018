"""The factory's entry ads, as frontends read them (schema in docs/protocol.md).

Pure: the ads come from the configuration alone, so what a factory
advertises can be checked without a collector.
"""

from __future__ import annotations

from typing import Any

from updraft import protocol
from updraft.factory.config import Entry, FactoryConfig


def entry_ad(factory: FactoryConfig, name: str, entry: Entry) -> dict[str, Any]:
    """One entry: its published attributes, then the protocol's own (which win)."""
    return {
        **entry.attributes,
        "MyType": protocol.ENTRY_TYPE,
        "Name": protocol.entry_ad_name(name, factory.name),
        "UpdraftSchema": protocol.SCHEMA,
        "ClassAdLifetime": 3 * factory.cycle_seconds,
        protocol.E_FACTORY: factory.name,
        protocol.E_ENTRY: name,
        protocol.E_GRID_TYPE: entry.grid_type,
        protocol.E_CPUS: _cpus_per_pilot(entry),
        protocol.E_MAX_PILOTS: entry.limits.max_pilots,
        protocol.E_MAX_IDLE: entry.limits.max_idle,
        protocol.E_MAX_HELD: entry.limits.max_held,
        protocol.E_DOWNTIME: entry.downtime,
    }


def entry_ads(factory: FactoryConfig) -> list[dict[str, Any]]:
    """Ads for every enabled entry; a disabled entry is not advertised at all."""
    return [entry_ad(factory, name, entry) for name, entry in sorted(factory.entries.items()) if entry.enabled]


def _cpus_per_pilot(entry: Entry) -> int:
    """GLIDEIN_CPUS when it is a number; anything else (e.g. "auto") advertises 1, the safe minimum."""
    cpus = entry.attributes.get(protocol.E_CPUS, 1)
    return cpus if isinstance(cpus, int) and not isinstance(cpus, bool) and cpus > 0 else 1
