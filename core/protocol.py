"""The ads factories and frontends exchange in the WMS collector (schema 1).

Both sides build and read ads only through this module, so the schema in
`docs/protocol.md` has one implementation. Everything here is pure: plain
dicts in, plain dicts or dataclasses out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

SCHEMA = 1
ENTRY_TYPE = "UpdraftEntry"
REQUEST_TYPE = "UpdraftRequest"

# Entry ad attributes set by the factory (beyond the entry's own published attributes).
E_FACTORY = "UpdraftFactory"
E_ENTRY = "UpdraftEntry"
E_GRID_TYPE = "UpdraftGridType"
E_CPUS = "GLIDEIN_CPUS"
E_MAX_PILOTS = "UpdraftMaxPilots"
E_MAX_IDLE = "UpdraftMaxIdle"
E_MAX_HELD = "UpdraftMaxHeld"
E_DOWNTIME = "UpdraftInDowntime"

# Request ad attributes set by the frontend.
R_FRONTEND = "UpdraftFrontend"
R_GROUP = "UpdraftGroup"
R_FACTORY = "UpdraftFactory"
R_ENTRY = "UpdraftEntry"
R_SECURITY_CLASS = "UpdraftSecurityClass"
R_IDLE = "UpdraftReqIdlePilots"
R_MAX = "UpdraftReqMaxPilots"
R_REMOVE = "UpdraftReqRemoveMode"
R_REMOVE_MAX = "UpdraftReqRemoveMax"
R_BOUND_BY = "UpdraftReqBoundBy"
R_CYCLE = "UpdraftCycle"
R_TIME = "UpdraftTime"
R_JOBS_IDLE = "UpdraftJobsIdle"
R_JOBS_OLD_IDLE = "UpdraftJobsOldIdle"
R_JOBS_RUNNING = "UpdraftJobsRunning"
R_SLOTS_TOTAL = "UpdraftSlotsTotal"
R_SLOTS_IDLE = "UpdraftSlotsIdle"
R_SLOTS_RUNNING = "UpdraftSlotsRunning"
R_SLOTS_CORES = "UpdraftSlotsCores"

IDENTITY = "AuthenticatedIdentity"
"""Added by the collector: who really sent the ad."""


class RemoveMode(str, Enum):
    """A request's `UpdraftReqRemoveMode`: which unneeded pilots the factory may remove."""

    NONE = "none"
    IDLE = "idle"
    ALL = "all"


def entry_ad_name(entry: str, factory: str) -> str:
    return f"{entry}@{factory}"


def request_ad_name(frontend: str, group: str, entry: str, factory: str) -> str:
    return f"{frontend}.{group}/{entry}@{factory}"


@dataclass(frozen=True)
class PublishedRequest:
    """A request as read back from the collector (for diffs and the factory)."""

    frontend: str
    group: str
    factory: str
    entry: str
    idle: int
    max_pilots: int
    remove: str
    remove_max: int
    identity: str | None
    security_class: str = "default"

    @property
    def key(self) -> tuple[str, str]:
        """(group, entry@factory): what the frontend decides per."""
        return self.group, entry_ad_name(self.entry, self.factory)


def parse_request(ad: Mapping[str, Any]) -> PublishedRequest | None:
    """A request ad of this schema, or None for anything malformed or of another schema."""
    try:
        if int(ad.get("UpdraftSchema", -1)) != SCHEMA:
            return None
        return PublishedRequest(
            frontend=str(ad[R_FRONTEND]),
            group=str(ad[R_GROUP]),
            factory=str(ad[R_FACTORY]),
            entry=str(ad[R_ENTRY]),
            idle=int(ad[R_IDLE]),
            max_pilots=int(ad[R_MAX]),
            remove=str(ad[R_REMOVE]),
            remove_max=int(ad[R_REMOVE_MAX]),
            identity=ad.get(IDENTITY),
            security_class=str(ad.get(R_SECURITY_CLASS, "default")),
        )
    except (KeyError, TypeError, ValueError):
        return None
