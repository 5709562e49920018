"""The ads factories and frontends exchange in the WMS collector (schema 1).

Both sides build and read ads only through this module, so the schema in
`docs/protocol.md` has one implementation. Everything here is pure: plain
dicts in, plain dicts or dataclasses out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from updraft.adnumbers import finite_number, is_int

SCHEMA = 1
ENTRY_TYPE = "UpdraftEntry"
FACTORY_TYPE = "UpdraftFactory"
"""MyType of the one global ad a factory publishes about itself."""
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
E_NODES = "GLIDEIN_Nodes"
"""Nodes per pilot (HPC allocations of several nodes); absent means 1."""
E_HEALTH = "UpdraftHealth"
"""The entry's health state: "active", "degraded", "banned" or "probing" (`updraft.factory.health_model`)."""
E_HEALTH_REASON = "UpdraftHealthReason"
"""Why the entry is in that state, one line an operator wrote or the policy derived."""
E_HEALTH_SINCE = "UpdraftHealthSince"
"""When the entry entered that state (epoch seconds)."""
E_HEALTH_CAP = "UpdraftHealthCap"
"""Most idle pilots the factory keeps queued for the entry in this state, over all frontends;
absent when the state caps nothing (active). Banned advertises 0."""

E_SLOT_PREFIX = "UpdraftSlot_"
"""Before a machine attribute: what the slot of one pilot node will advertise (``UpdraftSlot_Memory``
is the pilot slot's ``Memory``). Strip it to get the prospective slot ad (`prospective_slot`)."""
SLOT_ATTRIBUTES = (
    "Cpus",
    "TotalCpus",
    "Memory",
    "Disk",
    "Arch",
    "OpSys",
    "OpSysAndVer",
    "OpSysMajorVer",
    "FileSystemDomain",
    "UidDomain",
    "HasFileTransfer",
    "IS_GLIDEIN",
    "GLIDEIN_Site",
    "GLIDEIN_Entry_Name",
    "GLIDEIN_Factory",
    "GLIDEIN_Name",
    "GLIDEIN_Schedd",
    "GLIDEIN_Nodes",
    "GLIDEIN_Max_Walltime",
    "GLIDEIN_Max_Idle",
    "GLIDEIN_Max_Tail",
    "GLIDEIN_BlackHole_Jobs",
    "GLIDEIN_BlackHole_Window",
)
"""The slot attributes an entry ad may announce; each only when the factory knows its value
(docs/protocol.md, "The prospective slot"). An absent one is unknown, never false."""
SLOT_PROJECTION = tuple(E_SLOT_PREFIX + name for name in SLOT_ATTRIBUTES)
_SLOT_NAMES = tuple(zip(SLOT_ATTRIBUTES, SLOT_PROJECTION, strict=True))

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
R_HELD_SINCE = "UpdraftHeldSince"
"""Only on a request the frontend keeps while data it depends on is missing: when that data was last complete."""
R_JOBS_IDLE = "UpdraftJobsIdle"
R_JOBS_OLD_IDLE = "UpdraftJobsOldIdle"
R_JOBS_RUNNING = "UpdraftJobsRunning"
R_SLOTS_TOTAL = "UpdraftSlotsTotal"
R_SLOTS_IDLE = "UpdraftSlotsIdle"
R_SLOTS_RUNNING = "UpdraftSlotsRunning"
R_SLOTS_CORES = "UpdraftSlotsCores"
# What the frontend tells its pilots, through the factory's submit description.
R_PILOT_COLLECTOR = "UpdraftPilotCollector"
R_MANIFEST_URL = "UpdraftFrontendManifestURL"
R_MANIFEST_SHA256 = "UpdraftFrontendManifestSHA256"
R_GROUP_START = "UpdraftGroupStart"
R_CREDENTIAL = "UpdraftCredential"
"""The pilot token and the frontend's identity, sealed to the factory's key (`updraft.envelope`)."""

# The factory's global ad: the key frontends seal credentials to.
F_PUBLIC_KEY = "UpdraftPublicKey"
F_KEY_ID = "UpdraftKeyId"

_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}")
_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_LINE_BREAK = re.compile(r"[\r\n\x00]")
MAX_START_LENGTH = 4096

IDENTITY = "AuthenticatedIdentity"
"""Added by the collector: who really sent the ad."""

REQUEST_PROJECTION = (
    "Name",
    "UpdraftSchema",
    IDENTITY,
    R_FRONTEND,
    R_GROUP,
    R_FACTORY,
    R_ENTRY,
    R_SECURITY_CLASS,
    R_IDLE,
    R_MAX,
    R_REMOVE,
    R_REMOVE_MAX,
    R_PILOT_COLLECTOR,
    R_MANIFEST_URL,
    R_MANIFEST_SHA256,
    R_GROUP_START,
    R_CREDENTIAL,
    R_TIME,
    R_HELD_SINCE,
)
"""What `read_request` reads: the only attributes a reader asks the collector for."""
ENTRY_PROJECTION = (
    "Name",
    "UpdraftSchema",
    IDENTITY,
    E_FACTORY,
    E_ENTRY,
    E_GRID_TYPE,
    E_CPUS,
    E_MAX_PILOTS,
    E_MAX_IDLE,
    E_MAX_HELD,
    E_DOWNTIME,
    E_NODES,
    E_HEALTH,
    E_HEALTH_REASON,
    E_HEALTH_SINCE,
    E_HEALTH_CAP,
    *SLOT_PROJECTION,
)
"""The entry ad attributes of the protocol; a frontend adds those its match expressions read."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def sendable(ad: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`ad` with control characters (NUL included) removed from its string values, and the attributes
    that had any.

    A NUL byte in one value makes a collector unable to send the ad back, and
    every query that returns it fails as a whole; no value Updraft writes has
    a reason to carry a control character. Every ad goes through this before
    it is advertised (`updraft.condor.Collector.advertise`).
    """
    cleaned = {key: _CONTROL.sub("", value) if isinstance(value, str) else value for key, value in ad.items()}
    return cleaned, [key for key, value in ad.items() if cleaned[key] != value]


class RemoveMode(str, Enum):
    """A request's `UpdraftReqRemoveMode`: which unneeded pilots the factory may remove."""

    NONE = "none"
    IDLE = "idle"
    ALL = "all"


def entry_ad_name(entry: str, factory: str) -> str:
    return f"{entry}@{factory}"


def slot_attribute(name: str) -> str:
    """``Memory`` -> ``UpdraftSlot_Memory``: where the entry ad carries a slot attribute."""
    return E_SLOT_PREFIX + name


def prospective_slot(entry_ad: Mapping[str, Any]) -> dict[str, Any]:
    """The slot ad one pilot node of this entry will advertise, as far as its entry ad says.

    Only the attributes in `SLOT_ATTRIBUTES` are read (with the prefix
    stripped); whatever the entry ad leaves out is unknown.
    """
    return {name: entry_ad[prefixed] for name, prefixed in _SLOT_NAMES if prefixed in entry_ad}


def request_ad_name(frontend: str, group: str, entry: str, factory: str) -> str:
    return f"{frontend}.{group}/{entry}@{factory}"


@dataclass(frozen=True)
class PilotParams:
    """What a frontend tells the pilots it asks for: its pool, its staging area, its START.

    They travel in the request ad, authenticated by the collector, and the
    factory writes them into the submit description, the pilot's trusted
    channel. Empty strings mean "not given".
    """

    collector: str = ""
    manifest_url: str = ""
    manifest_sha256: str = ""
    group_start: str = ""


def pilot_params_problem(params: PilotParams) -> str | None:
    """Why a factory cannot pass these to a pilot, or None: the pilot must know which pool to join."""
    if not params.collector:
        return f"no {R_PILOT_COLLECTOR}: pilots would not know which pool to join"
    if not _HOST_PORT.fullmatch(params.collector):
        return f"{R_PILOT_COLLECTOR} {params.collector[:80]!r} is not host:port"
    if bool(params.manifest_url) != bool(params.manifest_sha256):
        return f"{R_MANIFEST_URL} and {R_MANIFEST_SHA256} go together"
    if params.manifest_url and not _URL.fullmatch(params.manifest_url):
        return f"{R_MANIFEST_URL} {params.manifest_url[:80]!r} is not an http(s) URL"
    if params.manifest_sha256 and not _SHA256.fullmatch(params.manifest_sha256):
        return f"{R_MANIFEST_SHA256} is not 64 lowercase hex digits"
    if _LINE_BREAK.search(params.group_start) or len(params.group_start) > MAX_START_LENGTH:
        return f"{R_GROUP_START} has a line break or is longer than {MAX_START_LENGTH} characters"
    return None


def pilot_params_ad(params: PilotParams) -> dict[str, str]:
    """The request ad attributes for `params` (only those given)."""
    attrs = {
        R_PILOT_COLLECTOR: params.collector,
        R_MANIFEST_URL: params.manifest_url,
        R_MANIFEST_SHA256: params.manifest_sha256,
        R_GROUP_START: params.group_start,
    }
    return {name: value for name, value in attrs.items() if value}


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
    pilot: PilotParams = field(default_factory=PilotParams)
    sealed: str = field(default="", repr=False)
    """The sealed credential as the ad carries it; empty when the frontend sent none."""
    time: float | None = None
    """When the frontend published it (`R_TIME`)."""
    held_since: float | None = None
    """`R_HELD_SINCE`: the request is a kept one, computed from data complete at that time."""

    @property
    def key(self) -> tuple[str, str]:
        """(group, entry@factory): what the frontend decides per."""
        return self.group, entry_ad_name(self.entry, self.factory)


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""Names that end up in ad names and file paths (frontends, groups, factories, entries, classes)."""
MAX_NAME = 128
MAX_SEALED = 64 * 1024
"""Longer than any sealed token; see `updraft.envelope.MAX_SEALED_CHARS`."""
MAX_COUNT = 1_000_000
"""No request asks for a million pilots; a larger number is a broken or hostile ad."""


class MalformedAd(ValueError):
    """An ad that breaks the schema; its message names the attribute and what is wrong."""


def read_name(ad: Mapping[str, Any], attr: str, default: str | None = None) -> str:
    """The name in `attr`, or MalformedAd: names from ads end up in file paths and ad names."""
    value = ad.get(attr, default)
    if value is None:
        raise MalformedAd(f"{attr} is missing")
    if not isinstance(value, str):
        raise MalformedAd(f"{attr} is a {type(value).__name__}, not a string")
    if len(value) > MAX_NAME or not NAME.fullmatch(value):
        raise MalformedAd(
            f"{attr} {value[:40]!r} is not a name (letters, digits, '_', '.', '-'; at most {MAX_NAME} characters)"
        )
    return value


def _count(ad: Mapping[str, Any], attr: str) -> int:
    value = ad.get(attr)
    if value is None:
        raise MalformedAd(f"{attr} is missing")
    if not is_int(value):
        raise MalformedAd(f"{attr} is a {type(value).__name__}, not an integer")
    if not 0 <= value <= MAX_COUNT:
        raise MalformedAd(f"{attr} {value} is outside 0..{MAX_COUNT}")
    return value


def _text(ad: Mapping[str, Any], attr: str, limit: int = 4096) -> str:
    value = ad.get(attr, "")
    if not isinstance(value, str):
        raise MalformedAd(f"{attr} is a {type(value).__name__}, not a string")
    if len(value) > limit:
        raise MalformedAd(f"{attr} is longer than {limit} characters")
    return value


def read_request(ad: Mapping[str, Any]) -> PublishedRequest:
    """A request ad of this schema, or MalformedAd saying which attribute is wrong and how.

    Everything in a request ad is written by whoever can advertise to the
    WMS collector, so nothing is coerced: a number must be an integer, a
    name must be a name (it becomes part of file paths at the factory).
    """
    schema = ad.get("UpdraftSchema")
    if schema != SCHEMA or isinstance(schema, bool):
        raise MalformedAd(f"UpdraftSchema {str(schema)[:20]!r} is not {SCHEMA}")
    remove = _text(ad, R_REMOVE, 16) or None
    if remove not in {mode.value for mode in RemoveMode}:
        raise MalformedAd(f"{R_REMOVE} {str(remove)[:16]!r} is not one of {', '.join(m.value for m in RemoveMode)}")
    identity = ad.get(IDENTITY)
    if identity is not None and not isinstance(identity, str):
        raise MalformedAd(f"{IDENTITY} is a {type(identity).__name__}, not a string")
    return PublishedRequest(
        frontend=read_name(ad, R_FRONTEND),
        group=read_name(ad, R_GROUP),
        factory=read_name(ad, R_FACTORY),
        entry=read_name(ad, R_ENTRY),
        idle=_count(ad, R_IDLE),
        max_pilots=_count(ad, R_MAX),
        remove=remove,
        remove_max=_count(ad, R_REMOVE_MAX),
        identity=identity,
        security_class=read_name(ad, R_SECURITY_CLASS, "default"),
        pilot=PilotParams(
            collector=_text(ad, R_PILOT_COLLECTOR, 256),
            manifest_url=_text(ad, R_MANIFEST_URL, 2048),
            manifest_sha256=_text(ad, R_MANIFEST_SHA256, 64),
            group_start=_text(ad, R_GROUP_START, 64 * 1024),  # pilot_params_problem says what is too long
        ),
        sealed=_text(ad, R_CREDENTIAL, MAX_SEALED),
        time=finite_number(ad.get(R_TIME)),
        held_since=finite_number(ad.get(R_HELD_SINCE)),
    )


def parse_request(ad: Mapping[str, Any]) -> PublishedRequest | None:
    """A request ad of this schema, or None for anything malformed (`read_request` says why)."""
    try:
        return read_request(ad)
    except MalformedAd:
        return None
