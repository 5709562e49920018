"""Reading ads that other parties write, so that one bad ad costs only itself.

Anyone allowed to advertise to the WMS collector can publish an ad the
collector stores but cannot send back: a string value with a NUL byte in it
makes every query that returns that value fail as a whole ("Failed
communication with collector"). A service that read all its ads in one query
would then read none. So:

- every query names the identities it trusts first (`trusted_constraint`):
  the collector checks `AuthenticatedIdentity` before anything else in the
  ad, so an untrusted ad is neither returned nor evaluated further;
- every query projects the attributes the reader needs, no more;
- a query that fails although the collector answered is asked again
  narrower (`read_isolated`): the names only, then halves of them, until
  each unreadable ad stands alone and is reported, and the others are read.

A collector that did not answer in time (`DaemonSilent`) is not asked again:
the cycle's deadline holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import classad2

from updraft.errors import CondorError, DaemonSilent
from updraft.ports import Ad, CollectorPort

IDENTITY = "AuthenticatedIdentity"
MAX_NARROWER_QUERIES = 64
"""How many narrower queries one read may spend isolating bad ads: bounded, so that a flood of
them costs a cycle a few seconds, not thousands of queries."""


def trusted_constraint(name_attr: str, trusted: Mapping[str, str]) -> str:
    """Ads whose `name_attr` is one of `trusted`'s names, each sent by that name's identity.

    The identity is compared first, so the collector evaluates nothing else
    in an ad from anyone else. With nothing trusted, nothing matches."""
    pairs = [
        f"({IDENTITY} =?= {classad2.quote(identity)} && {name_attr} =?= {classad2.quote(name)})"
        for name, identity in sorted(trusted.items())
    ]
    return " || ".join(pairs) if pairs else "false"


@dataclass(frozen=True)
class Unreadable:
    """An ad the collector holds but could not send; `identity` is who sent it, as the collector says."""

    name: str
    identity: str

    def describe(self, my_type: str) -> str:
        return (
            f"{my_type} ad {self.name[:80]!r} from {self.identity[:80]!r} cannot be read from the collector "
            "(a value it cannot send, such as a NUL byte): ignored"
        )


@dataclass(frozen=True)
class IsolatedRead:
    """The ads that could be read, the ones that could not, and those a bounded search left unresolved."""

    ads: tuple[Ad, ...]
    unreadable: tuple[Unreadable, ...] = ()
    unresolved: int = 0
    """Ads in parts that still failed when the narrower queries ran out; none of them was read."""

    def problems(self, my_type: str) -> list[str]:
        lines = [bad.describe(my_type) for bad in self.unreadable]
        if self.unresolved:
            lines.append(
                f"{self.unresolved} more {my_type} ad(s) not read: the collector could not send them "
                f"and {MAX_NARROWER_QUERIES} narrower queries did not isolate the bad ones"
            )
        return lines


def read_isolated(collector: CollectorPort, my_type: str, constraint: str, projection: Sequence[str]) -> IsolatedRead:
    """The `my_type` ads matching `constraint`, projected; an ad the collector cannot send is left out.

    Raises CondorError when even the names cannot be read (nothing could be
    isolated) and DaemonSilent when the collector did not answer in time.
    """
    try:
        return IsolatedRead(tuple(collector.generic_ads(my_type, constraint, projection)))
    except DaemonSilent:
        raise
    except CondorError as first:
        try:
            names = collector.generic_ads(my_type, constraint, ["Name", IDENTITY])
        except CondorError:
            raise first from None
    search = _Search(collector, my_type, constraint, list(projection), {str(ad.get("Name")): ad for ad in names})
    search.split(sorted(search.identities))
    return IsolatedRead(tuple(search.ads), tuple(search.unreadable), search.unresolved)


class _Search:
    """Bisects a failing read over ad names; each call to the collector spends one of a bounded number."""

    def __init__(
        self, collector: CollectorPort, my_type: str, constraint: str, projection: list[str], named: Mapping[str, Ad]
    ) -> None:
        self.collector, self.my_type, self.constraint, self.projection = collector, my_type, constraint, projection
        self.identities = {name: str(ad.get(IDENTITY, "unknown")) for name, ad in named.items()}
        self.left = MAX_NARROWER_QUERIES
        self.ads: list[Ad] = []
        self.unreadable: list[Unreadable] = []
        self.unresolved = 0

    def split(self, names: list[str]) -> None:
        if not names:
            return
        if self.left <= 0:
            self.unresolved += len(names)
            return
        self.left -= 1
        try:
            self.ads += self.collector.generic_ads(self.my_type, _among(self.constraint, names), self.projection)
        except DaemonSilent:
            raise
        except CondorError:
            if len(names) == 1:
                self.unreadable.append(Unreadable(names[0], self.identities[names[0]]))
                return
            half = len(names) // 2
            self.split(names[:half])
            self.split(names[half:])


def _among(constraint: str, names: Iterable[str]) -> str:
    listed = ", ".join(classad2.quote(name) for name in names)
    return f"({constraint}) && identicalMember(Name, {{{listed}}})"


MAX_IMPOSTORS_NAMED = 5


def impostors(
    collector: CollectorPort, my_type: str, trusted: Mapping[str, str], claimed: Callable[[str], str | None]
) -> list[str]:
    """One line naming the `my_type` ads whose Name claims a trusted name (`claimed`) but that were sent
    by an identity trusted for none, if any.

    Such ads are never read: only their Name and AuthenticatedIdentity are
    asked for, and the constraint compares the identity alone, so nothing an
    untrusted party wrote (a slow expression, say) is evaluated, by the
    collector or here. An operator is told all the same: another WMS writer
    is publishing under someone else's name."""
    identities = ", ".join(classad2.quote(identity) for identity in sorted(set(trusted.values())))
    constraint = f"!identicalMember({IDENTITY}, {{{identities}}})" if identities else "true"
    try:
        ads = collector.generic_ads(my_type, constraint, ["Name", IDENTITY])
    except CondorError as err:
        return [f"{my_type} ads from other identities not checked for trusted names: {err}"]
    found = [(str(ad.get("Name")), str(ad.get(IDENTITY)), claimed(str(ad.get("Name")))) for ad in ads]
    named = [(name, identity, claim) for name, identity, claim in found if claim is not None and claim in trusted]
    if not named:
        return []
    shown = ", ".join(
        f"{name[:80]!r} came from {identity[:80]!r}, {claim[:80]!r} is trusted only as {trusted[claim]!r}"
        for name, identity, claim in named[:MAX_IMPOSTORS_NAMED]
    )
    more = f" (and {len(named) - MAX_IMPOSTORS_NAMED} more)" if len(named) > MAX_IMPOSTORS_NAMED else ""
    return [f"{len(named)} {my_type} ad(s) under a trusted name from another identity ignored: {shown}{more}"]
