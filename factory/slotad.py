"""The slot a pilot of an entry will bring, as the factory knows it before the pilot runs.

The entry ad carries it as ``UpdraftSlot_<attribute>`` (`updraft.protocol.SLOT_ATTRIBUTES`),
so a frontend can evaluate a job's own Requirements against it before it
asks for pilots. Every value here is what the glidein will really put in
the startd's configuration (glidein/lib/condor_config.sh and
templates/condor_config.in), derived from the same words the factory
writes into the submit description (`updraft.factory.pilot_args`); what the
pilot finds out only on the worker (cores when ``GLIDEIN_CPUS`` is unset,
memory when nothing sets ``GLIDEIN_MaxMemMBs``, the HTCondor version) is
left out, since an absent attribute is unknown to the frontend and a wrong
one would refuse jobs the pilot could run. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from updraft.factory.config import Entry, FactoryConfig, nodes_in
from updraft.factory.pilot_args import glidein_environment
from updraft.protocol import PilotParams

DEFAULT_DOMAIN_SUFFIX = "updraft.invalid"
"""``.invalid`` is reserved (RFC 2606): no submit host's FILESYSTEM_DOMAIN or UID_DOMAIN ends so."""

SMALLEST_OF_A_SET = frozenset({"Cpus", "TotalCpus", "Memory", "Disk", "GLIDEIN_Max_Walltime"})
"""For an entry set, the least of its members: a job that fits it fits whichever member a pilot
goes to (the set, not the frontend, picks the member). Every other attribute must be the same on
every member to be advertised."""


def default_domain(advertised_name: str, factory_name: str) -> str:
    """``<entry>.<factory>.updraft.invalid``: the pilots' FILESYSTEM_DOMAIN and UID_DOMAIN unless the
    entry names the submit hosts' own.

    Never a real host's domain, so a job that needs its submit host's
    filesystem (``should_transfer_files = NO``) does not match a pilot it
    would fail on, and jobs run as the pilot's user. Named by the advertised
    entry (the set, for a set's members), so a set's members agree.
    """
    return f"{advertised_name}.{factory_name}.{DEFAULT_DOMAIN_SUFFIX}"


def pilot_domains(factory_name: str, advertised_name: str, entry: Entry) -> tuple[str, str]:
    """(FILESYSTEM_DOMAIN, UID_DOMAIN) of this entry's pilots: what the glidein is told and the ad says."""
    default = default_domain(advertised_name, factory_name)
    return entry.slot.filesystem_domain or default, entry.slot.uid_domain or default


def member_slot(factory_name: str, advertised_name: str, entry: Entry) -> dict[str, object]:
    """The slot ad one node of a pilot of `entry` will advertise, as far as the factory knows it.

    `advertised_name` is what the pilot is told it belongs to (the set's
    name for a set's member): its ``GLIDEIN_Entry_Name``.
    """
    environment = dict(glidein_environment(entry, PilotParams()))
    filesystem_domain, uid_domain = pilot_domains(factory_name, advertised_name, entry)
    slot: dict[str, object] = {
        **_cores_and_memory(environment, entry.glidein.slots_layout),
        **_platform(entry),
        "FileSystemDomain": filesystem_domain,
        "UidDomain": uid_domain,
        "HasFileTransfer": True,
        "IS_GLIDEIN": True,
        "GLIDEIN_Site": _text(environment.get("GLIDEIN_Site")) or advertised_name,
        "GLIDEIN_Entry_Name": advertised_name,
        "GLIDEIN_Factory": factory_name,
        "GLIDEIN_Name": _text(environment.get("GLIDEIN_Name")) or factory_name,
        "GLIDEIN_Max_Walltime": entry.pilot_walltime_seconds,
        "GLIDEIN_Max_Idle": entry.glidein.max_idle_seconds,
        "GLIDEIN_Max_Tail": entry.glidein.idle_tail_seconds,
    }
    schedd = _text(environment.get("GLIDEIN_Schedd"))
    if schedd:
        slot["GLIDEIN_Schedd"] = schedd
    nodes = _nodes(entry, environment)
    if nodes is not None:
        slot["GLIDEIN_Nodes"] = nodes
    if entry.glidein.blackhole_jobs:
        slot["GLIDEIN_BlackHole_Jobs"] = entry.glidein.blackhole_jobs
        slot["GLIDEIN_BlackHole_Window"] = entry.glidein.blackhole_window_seconds
    return slot


def advertised_slot(factory: FactoryConfig, advertised_name: str, members: Iterable[str]) -> dict[str, object]:
    """The slot an advertised entry's ad announces: its one member's, or what all of a set's members share.

    Numbers in `SMALLEST_OF_A_SET` are the least over the members (when every
    member knows one); anything else is announced only if every member has
    the same value.
    """
    slots = [member_slot(factory.name, advertised_name, factory.entries[name]) for name in members]
    if not slots:
        return {}
    first, *others = slots
    shared: dict[str, object] = {}
    for name, value in first.items():
        values = [value, *(slot.get(name) for slot in others)]
        if any(each is None for each in values):
            continue
        if name in SMALLEST_OF_A_SET:
            shared[name] = min(_whole_values(values))
        elif all(each == value for each in values):
            shared[name] = value
    return shared


def _cores_and_memory(environment: Mapping[str, object], layout: str) -> dict[str, int]:
    """Cpus, TotalCpus and Memory (MB) of one pilot node's slot: NUM_CPUS and MEMORY of its startd.

    A partitionable slot has them all (``SLOT_TYPE_1 = 100%``); fixed slots
    are one core each, the memory shared out evenly. Cores unknown when
    ``GLIDEIN_CPUS`` is not a number (the glidein counts the worker's),
    memory unknown when nothing sets ``GLIDEIN_MaxMemMBs`` (HTCondor
    measures the worker's).
    """
    cpus = _positive_whole(environment.get("GLIDEIN_CPUS"))
    memory = _positive_whole(environment.get("GLIDEIN_MaxMemMBs"))
    found: dict[str, int] = {}
    if cpus is not None:
        found["TotalCpus"] = cpus
        found["Cpus"] = 1 if layout == "fixed" else cpus
    if memory is not None and layout != "fixed":
        found["Memory"] = memory
    elif memory is not None and cpus is not None:
        found["Memory"] = memory // cpus
    return found


def _platform(entry: Entry) -> dict[str, object]:
    """What the operator says of the workers (``slot:``), each only when said."""
    slot = entry.slot
    said: dict[str, object] = {
        "Disk": slot.disk_mb * 1024 if slot.disk_mb is not None else None,
        "Arch": slot.arch,
        "OpSys": slot.opsys,
        "OpSysAndVer": slot.opsys_and_ver,
        "OpSysMajorVer": slot.opsys_major_ver,
    }
    return {name: value for name, value in said.items() if value is not None}


def _nodes(entry: Entry, environment: Mapping[str, object]) -> int | None:
    """GLIDEIN_Nodes as the glidein resolves it: ``--nodes`` (written when above 1), else the
    environment's; None when the pilot would ask the batch system."""
    from_arguments = nodes_in(entry.attributes)
    if from_arguments > 1:
        return from_arguments
    return _positive_whole(environment.get("GLIDEIN_Nodes"))


def _positive_whole(value: object) -> int | None:
    """A positive whole number as the glidein reads it from its environment (an int or its digits)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    return value if isinstance(value, int) and value > 0 else None


def _text(value: object) -> str | None:
    """A value the glidein writes as a ClassAd string (it reads every variable as text); None for
    anything whose text form the factory would only guess (true/false, reals)."""
    if isinstance(value, (bool, float)):
        return None
    return str(value) if isinstance(value, (str, int)) and str(value) else None


def _whole_values(values: Iterable[object]) -> list[int]:
    return [value for value in values if isinstance(value, int) and not isinstance(value, bool)]
