"""The factory's own view of its cloud instances, and what it decides about those no pilot owns.

A cloud pilot is a grid-universe job in the factory's schedd; HTCondor's
grid manager starts its virtual machine and writes the instance id into the
job ad (``EC2InstanceName``). When that bookkeeping is lost (a job removed
with ``-forcex``, a grid manager that crashed between RunInstances and
writing the id, a schedd whose spool was wiped) the instance keeps running
and keeps costing money, and nothing in HTCondor looks for it. The factory
does: every instance it starts carries the tags below, so each cycle it
lists the instances tagged with its name through the EC2 API
(`updraft.factory.cloudports`) and compares them with the ids its queued
pilots claim.

An instance no queued pilot claims is an *unknown instance*: reported
every cycle, and terminated when its entry sets
``terminate_unknown_after_seconds``. The comparison waits
``unknown_instance_grace_seconds`` after the launch, because the queue and
the API are never read at the same instant and the id reaches the job ad
a few seconds after the instance exists. An instance whose entry tag names
no configured entry is reported under the factory and never terminated:
the factory has no policy for it.

An account (endpoint and credentials) that could not be listed is unknown
for the cycle, never "no instances": nothing is decided about it.

Everything here is pure: `decide_cloud` takes what was read and `now`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from updraft import timefmt

# The tags are defined once, beside the user data the renderer writes with them; re-exported here.
from updraft.factory.gridtypes.cloud import TAG_ENTRY as TAG_ENTRY
from updraft.factory.gridtypes.cloud import TAG_FACTORY as TAG_FACTORY
from updraft.factory.gridtypes.cloud import TAG_PILOT as TAG_PILOT
from updraft.records import Record, Step

LISTED_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
"""The instance states the factory lists: every state but terminated (an instance that costs nothing)."""
LEAVING_STATES = frozenset({"shutting-down"})
"""Already being terminated: counted, never reported or terminated again."""

UNCONFIGURED = "_unconfigured"
"""What monitoring names the entry of instances whose entry tag names no configured entry."""

MAX_LISTED = 5
"""Up to this many unknown instances of one entry get a line each; more make one line."""


@dataclass(frozen=True, slots=True)
class CloudCredentials:
    """The files holding an EC2 key pair: read when a call is made, never kept, never shown."""

    access_key_file: Path
    secret_key_file: Path


@dataclass(frozen=True, slots=True)
class CloudAccount:
    """One EC2 API endpoint with one set of credentials: what one listing covers."""

    endpoint: str
    credentials: CloudCredentials


@dataclass(frozen=True, slots=True)
class CloudInstance:
    """One instance as DescribeInstances shows it."""

    id: str
    state: str
    launched: float
    """Epoch seconds of its launch (LaunchTime)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    image: str = ""
    instance_type: str = ""

    @property
    def entry(self) -> str:
        return self.tags.get(TAG_ENTRY, "")

    @property
    def pilot(self) -> str:
        return self.tags.get(TAG_PILOT, "")


@dataclass(frozen=True)
class AccountRead:
    """One account's instances this cycle, or None with the problem when it could not be listed."""

    account: CloudAccount
    entries: tuple[str, ...]
    """The enabled entries that use this account (what a problem line names)."""
    instances: tuple[CloudInstance, ...] | None
    problem: str | None = None


@dataclass(frozen=True)
class CloudView:
    """What the cycle read from every account its enabled cloud entries use."""

    reads: tuple[AccountRead, ...] = ()
    problems: tuple[str, ...] = ()
    """Accounts not listed (unreachable, refused, credentials unreadable) and entries without credentials."""


@dataclass(frozen=True, slots=True)
class CloudPolicy:
    """An entry's rules for instances no pilot owns (its ``cloud`` keys)."""

    grace_seconds: float = 300
    terminate_after_seconds: float | None = None
    """None: report only."""


@dataclass(frozen=True, slots=True)
class UnknownInstance:
    """An instance tagged with this factory's name that no queued pilot claims."""

    entry: str | None
    """Its entry; None when its entry tag names no configured entry (reported under the factory)."""
    instance: CloudInstance
    account: CloudAccount
    why: str


@dataclass(frozen=True, slots=True)
class Terminate:
    """Instances of one account to terminate, all for one reason."""

    account: CloudAccount
    ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class CloudDecision:
    """What the factory decided about one entry's instances (entry None: the factory's, no entry's)."""

    entry: str | None
    states: Mapping[str, int] = field(default_factory=dict)
    """Its listed instances by state, claimed ones included."""
    unknown: tuple[UnknownInstance, ...] = ()
    actions: tuple[Terminate, ...] = ()
    steps: tuple[Step, ...] = ()
    bound_by: tuple[str, ...] = ()
    """``cloud.terminate_unknown_after_seconds`` when it kept unknown instances running (unset, or not yet
    reached): what an operator would change to have them terminated."""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CloudPlan:
    """Every cloud entry whose account was listed this cycle; entries of unknown accounts are absent."""

    decisions: tuple[CloudDecision, ...] = ()

    @property
    def unknown(self) -> tuple[UnknownInstance, ...]:
        return tuple(u for d in self.decisions for u in d.unknown)

    @property
    def actions(self) -> tuple[Terminate, ...]:
        return tuple(a for d in self.decisions for a in d.actions)


def decide_cloud(
    factory: str,
    view: CloudView,
    claims: Mapping[str, str],
    policies: Mapping[str, CloudPolicy],
    now: float,
) -> CloudPlan:
    """Per entry: its instances by state, the unknown ones among them, and those to terminate.

    `claims` maps instance ids to the queued pilot that names them (every
    pilot in the queue, removed ones on their way out included: the grid
    manager is terminating those). `policies` has every configured cloud
    entry. An instance listed twice (two accounts on one EC2 account) counts
    once. Only instances whose factory tag is `factory` are considered,
    whatever the API's filter returned: the factory never acts on an
    instance it did not start.
    """
    found: dict[str | None, list[tuple[CloudInstance, CloudAccount]]] = {}
    listed: set[str | None] = set()
    seen: set[str] = set()
    for read in view.reads:
        if read.instances is None:
            continue
        listed.update(read.entries)
        for instance in read.instances:
            if instance.id in seen or instance.tags.get(TAG_FACTORY) != factory:
                continue
            seen.add(instance.id)
            entry = instance.entry if instance.entry in policies else None
            found.setdefault(entry, []).append((instance, read.account))
    keys = sorted(listed | set(found), key=lambda e: (e is None, e or ""))
    return CloudPlan(tuple(_entry_decision(e, found.get(e, []), claims, policies.get(e or ""), now) for e in keys))


def _entry_decision(
    entry: str | None,
    instances: list[tuple[CloudInstance, CloudAccount]],
    claims: Mapping[str, str],
    policy: CloudPolicy | None,
    now: float,
) -> CloudDecision:
    rules = policy or CloudPolicy()
    record = Record()
    unknown = []
    for instance, account in sorted(instances, key=lambda pair: (pair[0].launched, pair[0].id)):
        why = _unknown_because(instance, claims, rules, now)
        if why is not None:
            unknown.append(UnknownInstance(entry, instance, account, why))
    record.want(len(unknown))
    record.step("unknown instances", len(unknown), "; ".join(f"{u.instance.id}: {u.why}" for u in unknown))
    doomed = _to_terminate(unknown, None if entry is None else rules.terminate_after_seconds, now)
    if entry is None and unknown:
        record.notes.append("no entry tag of a configured entry: reported, never terminated")
    record.lower(len(doomed), "terminate", ("cloud.terminate_unknown_after_seconds",), _policy_words(rules, entry))
    states = Counter(instance.state for instance, _ in instances)
    return CloudDecision(
        entry,
        dict(sorted(states.items())),
        tuple(unknown),
        _terminations(doomed, rules),
        tuple(record.steps),
        tuple(record.bound_by),
        tuple(record.notes),
    )


def _unknown_because(instance: CloudInstance, claims: Mapping[str, str], rules: CloudPolicy, now: float) -> str | None:
    """Why the instance belongs to no pilot, or None when a pilot claims it, it is leaving, or is too new to tell."""
    if instance.id in claims or instance.state in LEAVING_STATES:
        return None
    age = now - instance.launched
    if age < rules.grace_seconds:
        return None
    return f"{instance.state} for {age:.0f} s, no queued pilot names it (grace {rules.grace_seconds:g} s)"


def _to_terminate(unknown: list[UnknownInstance], after: float | None, now: float) -> list[UnknownInstance]:
    if after is None:
        return []
    return [u for u in unknown if now - u.instance.launched >= after]


def _policy_words(rules: CloudPolicy, entry: str | None) -> str:
    if entry is None:
        return "no configured entry"
    if rules.terminate_after_seconds is None:
        return "not set: report only"
    return f"{rules.terminate_after_seconds:g} s"


def _terminations(doomed: list[UnknownInstance], rules: CloudPolicy) -> tuple[Terminate, ...]:
    by_account: dict[CloudAccount, list[str]] = {}
    for unknown in doomed:
        by_account.setdefault(unknown.account, []).append(unknown.instance.id)
    reason = f"unknown to this factory for more than {rules.terminate_after_seconds or 0:g} s"
    return tuple(Terminate(account, tuple(ids), reason) for account, ids in by_account.items())


# --------------------------------------------------------------------------
# What an operator reads
# --------------------------------------------------------------------------


def unknown_lines(plan: CloudPlan) -> list[str]:
    """One problem line per unknown instance, or one line for an entry with more than `MAX_LISTED`."""
    lines: list[str] = []
    for decision in plan.decisions:
        if len(decision.unknown) <= MAX_LISTED:
            lines.extend(unknown_line(u) for u in decision.unknown)
        elif decision.unknown:
            lines.append(_flood_line(decision))
    return lines


def unknown_line(unknown: UnknownInstance) -> str:
    """E.g. "entry cloud: instance i-0abc (running since 2026-12-06 03:10 UTC, pilot tag 12.0) belongs to
    no pilot of this factory"."""
    instance = unknown.instance
    pilot = f", pilot tag {instance.pilot}" if instance.pilot else ", no pilot tag"
    since = f"{instance.state} since {timefmt.utc(instance.launched, timefmt.MINUTES)}"
    if unknown.entry is None:
        return (
            f"factory: instance {instance.id} ({since}, entry tag {instance.entry or '(none)'!r}{pilot}) "
            f"belongs to no configured entry of this factory"
        )
    return f"entry {unknown.entry}: instance {instance.id} ({since}{pilot}) belongs to no pilot of this factory"


def _flood_line(decision: CloudDecision) -> str:
    who = "factory" if decision.entry is None else f"entry {decision.entry}"
    states = Counter(u.instance.state for u in decision.unknown)
    ids = ", ".join(u.instance.id for u in decision.unknown[:MAX_LISTED])
    shown = ", ".join(f"{state} {count}" for state, count in sorted(states.items()))
    return (
        f"{who}: {len(decision.unknown)} instances belong to no pilot of this factory ({shown}); "
        f"e.g. {ids} and {len(decision.unknown) - MAX_LISTED} more"
    )
