"""In-memory stand-ins for the ports, shipped beside them so service loops are tested without daemons.

They keep ads as plain dicts and evaluate constraints with the ClassAd
library itself, so a constraint a service sends is judged the way a daemon
would judge it. `unreachable=True` makes every call fail the way a real
adapter fails when its deadline passes: at once here, with the same kind of
message, so a test can check that a cycle treats silence as unknown, never
as zero.

These are for unit tests of the loops only; the integration tests run the
real daemons.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import classad2
import htcondor2

from updraft import protocol
from updraft.errors import CondorError, DaemonSilent

Ad = dict[str, Any]
_MY_TYPES: Mapping[htcondor2.AdType, str] = {
    htcondor2.AdType.Startd: "Machine",
    htcondor2.AdType.Schedd: "Scheduler",
    htcondor2.AdType.Collector: "Collector",
    htcondor2.AdType.Master: "DaemonMaster",
    htcondor2.AdType.Negotiator: "Negotiator",
}


def matches(ad: Mapping[str, Any], constraint: str) -> bool:
    """Whether `constraint` is true for `ad`, as a daemon evaluates it (undefined is not true)."""
    return classad2.ExprTree(constraint).eval(classad2.ClassAd(dict(ad))) is True


def project(ad: Mapping[str, Any], projection: Iterable[str]) -> Ad:
    wanted = list(projection)
    return {key: value for key, value in ad.items() if not wanted or key in wanted}


def _unsendable(ad: Mapping[str, Any]) -> bool:
    """A value the real collector stores but cannot send back: the whole query then fails (seen in 25.x)."""
    return any(isinstance(value, str) and "\0" in value for value in ad.values())


def _timed_out(what: str) -> CondorError:
    return DaemonSilent(f"{what}: no answer within the deadline (fake: unreachable)")


@dataclass
class FakeSchedd:
    """A schedd's queue and history as lists of ads; every command is recorded."""

    name: str = "fake-schedd"
    jobs: list[Ad] = field(default_factory=list)
    finished: list[Ad] = field(default_factory=list)
    unreachable: bool = False
    now: float = 0.0
    """The time stamped on submitted jobs (QDate, EnteredCurrentStatus)."""
    submitted: list[tuple[dict[str, str], int]] = field(default_factory=list)
    acted: list[tuple[str, list[str], str]] = field(default_factory=list)
    _next_cluster: int = 1

    def _check(self, what: str) -> None:
        if self.unreachable:
            raise _timed_out(f"{what} schedd {self.name}")

    def query(self, constraint: str = "true", projection: Iterable[str] = ()) -> list[Ad]:
        self._check("query of")
        return [project(ad, projection) for ad in self.jobs if matches(ad, constraint)]

    def grouped(self, constraint: str, attributes: Iterable[str]) -> list[Ad]:
        self._check("grouped query of")
        by = list(attributes)
        counts: dict[tuple[Any, ...], int] = {}
        for ad in self.jobs:
            if matches(project(ad, by), constraint):  # the schedd judges the grouped ad, not the job
                key = tuple(ad.get(name) for name in by)
                counts[key] = counts.get(key, 0) + 1
        return [
            {**{n: v for n, v in zip(by, key, strict=True) if v is not None}, "JobCount": count}
            for key, count in counts.items()
        ]

    def history(self, constraint: str, projection: Iterable[str] = (), limit: int = -1) -> list[Ad]:
        self._check("history of")
        found = [project(ad, projection) for ad in reversed(self.finished) if matches(ad, constraint)]
        return found if limit < 0 else found[:limit]

    def submit(self, description: Mapping[str, str], count: int = 1) -> int:
        """Queue `count` idle jobs; each `+Attr` of the description becomes a job attribute."""
        self._check("submit to")
        cluster, self._next_cluster = self._next_cluster, self._next_cluster + 1
        self.submitted.append((dict(description), count))
        attrs = {key[1:]: classad2.ExprTree(value).eval() for key, value in description.items() if key.startswith("+")}
        for proc in range(count):
            self.jobs.append(
                {
                    **attrs,
                    "ClusterId": cluster,
                    "ProcId": proc,
                    "JobStatus": 1,
                    "QDate": int(self.now),
                    "EnteredCurrentStatus": int(self.now),
                }
            )
        return cluster

    def act_on_jobs(self, action: htcondor2.JobAction, job_ids: Iterable[str], reason: str) -> None:
        self._check(f"{action.name.lower()} on")
        ids = list(job_ids)
        self.acted.append((action.name, ids, reason))
        for ad in [ad for ad in self.jobs if f"{ad['ClusterId']}.{ad['ProcId']}" in ids]:
            self._apply(action, ad)

    def remove(self, constraint: str, reason: str) -> None:
        self._check("remove on")
        self.acted.append(("Remove", [constraint], reason))
        for ad in [ad for ad in self.jobs if matches(ad, constraint)]:
            self._apply(htcondor2.JobAction.Remove, ad)

    def _apply(self, action: htcondor2.JobAction, ad: Ad) -> None:
        if action is htcondor2.JobAction.Remove:
            self.jobs.remove(ad)
            self.finished.append({**ad, "JobStatus": 3, "EnteredCurrentStatus": int(self.now)})
        elif action is htcondor2.JobAction.Release:
            ad.update(JobStatus=1, EnteredCurrentStatus=int(self.now))
        elif action is htcondor2.JobAction.Hold:
            ad.update(JobStatus=5, EnteredCurrentStatus=int(self.now))


@dataclass
class FakeCollector:
    """A collector's ads as a list of dicts; generic ads replace each other by (MyType, Name)."""

    address: str = "fake-collector:9618"
    ads: list[Ad] = field(default_factory=list)
    schedds: dict[str, FakeSchedd] = field(default_factory=dict)
    unreachable: bool = False
    calls: list[str] = field(default_factory=list)

    def _check(self, what: str) -> None:
        self.calls.append(what)
        if self.unreachable:
            raise _timed_out(f"{what} collector {self.address}")

    def query(self, ad_type: htcondor2.AdType, constraint: str = "true", projection: Iterable[str] = ()) -> list[Ad]:
        self._check("query of")
        my_type = _MY_TYPES.get(ad_type)
        found = [
            project(ad, projection)
            for ad in self.ads
            if (my_type is None or ad.get("MyType") == my_type) and matches(ad, constraint)
        ]
        if any(_unsendable(ad) for ad in found):
            raise CondorError(f"query of collector {self.address}: Failed communication with collector.")
        return found

    def generic_ads(self, my_type: str, constraint: str = "true", projection: Iterable[str] = ()) -> list[Ad]:
        return self.query(htcondor2.AdType.Any, f"MyType == {classad2.quote(my_type)} && ({constraint})", projection)

    def advertise(self, ads: Iterable[Mapping[str, Any]]) -> None:
        new = list(ads)
        if not new:  # as the real adapter: nothing to send, no call
            return
        self._check("advertising to")
        for ad in new:
            key = (ad.get("MyType"), ad.get("Name"))
            self.ads = [old for old in self.ads if (old.get("MyType"), old.get("Name")) != key]
            self.ads.append(protocol.sendable(ad)[0])  # as the real adapter sends it

    def invalidate(self, my_type: str, constraint: str) -> None:
        self._check("invalidating ads in")
        self.ads = [ad for ad in self.ads if not (ad.get("MyType") == my_type and matches(ad, constraint))]

    def schedd(self, name: str) -> FakeSchedd:
        self._check(f"locating schedd {name!r} in")
        if name not in self.schedds:
            raise CondorError(f"schedd {name!r} is not advertised in collector {self.address}")
        return self.schedds[name]
