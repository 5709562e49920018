"""The one place Updraft talks to HTCondor daemons.

Every call goes through `_call`, which runs it in a forked child under a
deadline (`updraft.deadline`) and turns HTCondor's exceptions into
`CondorError`: a daemon that is down, slow, or accepts and never answers
costs a cycle one timeout, never a hang. Results leave this module as plain
dicts of the projected attributes, so the code that decides never touches a
binding object.

A `CallBudget` is shared by every adapter of one cycle. A daemon that let
one call run into its deadline is unreachable for the rest of that cycle:
later calls to it fail at once instead of waiting again, so a cycle against
a hung daemon lasts one timeout plus a small margin, not one per call.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import classad2
import htcondor2

from updraft import protocol
from updraft.deadline import ChildFailed, DeadlineExceeded, call_in_child
from updraft.errors import CallFailed, CondorError, DaemonSilent

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_TIMEOUT = 30.0
Ad = dict[str, Any]


class CallBudget:
    """One cycle's deadline per call, and the daemons that already missed one this cycle."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._unreachable: dict[str, str] = {}

    def missed(self, daemon: str) -> str | None:
        """Why `daemon` is not asked again this cycle, or None when it may be."""
        with self._lock:
            return self._unreachable.get(daemon)

    def mark_unreachable(self, daemon: str, why: str) -> None:
        with self._lock:
            self._unreachable.setdefault(daemon, why)

    @property
    def unreachable(self) -> dict[str, str]:
        """Each daemon that missed a deadline this cycle, with the first call that did."""
        with self._lock:
            return dict(self._unreachable)


def use_client_config(path: Path | None) -> None:
    """Point this process's HTCondor client at a config file (None: keep the environment's).

    The bindings keep one configuration per process, so this is called once,
    at start-up (and on a reload), by the command that owns the process.
    """
    if path is None:
        return
    os.environ["CONDOR_CONFIG"] = str(path)
    htcondor2.reload_config()


def _call(what: str, daemon: str, budget: CallBudget, fn: Callable[[], T]) -> T:
    """`fn()` under the budget's deadline, in a child process; CondorError for every way it can fail
    (DaemonSilent past the deadline, CallFailed when the child brought no answer back)."""
    earlier = budget.missed(daemon)
    if earlier is not None:  # the same reason again, so a cycle's problems say it once
        raise DaemonSilent(earlier)
    try:
        return call_in_child(lambda: _as_ours(what, fn), budget.timeout)
    except DeadlineExceeded:
        budget.mark_unreachable(daemon, f"{what}: no answer within {budget.timeout:g} s")
        raise DaemonSilent(budget.missed(daemon)) from None  # calls missing it at once say the first reason
    except ChildFailed as err:  # no answer came back: nothing the daemon said
        raise CallFailed(f"{what}: {err}") from None


def _as_ours(what: str, fn: Callable[[], T]) -> T:
    """`fn()` with the bindings' exceptions turned into CondorError, in the child: theirs do not pickle."""
    try:
        return fn()
    except (htcondor2.HTCondorException, classad2.ClassAdException, RuntimeError, ValueError) as err:
        raise CondorError(f"{what}: {err}") from None


@dataclass(frozen=True)
class Expression:
    """An attribute whose value is an expression its own ad cannot evaluate (a job's Requirements):
    kept as text, so it can be evaluated where it means something, against a slot."""

    text: str


def _grouped_value(ad: classad2.ClassAd, key: str) -> Any:
    """The value, or the `Expression` when the ad alone cannot say what it is.

    A grouped job ad holds only the group-by attributes. ``Requirements``
    reads the slot's (TARGET), so evaluating it here would say false or
    undefined for every job; ``RequestDisk = DiskUsage`` is undefined
    without DiskUsage. Their text is what matching needs.
    """
    raw = ad.lookup(key)
    value = ad.eval(key)
    if isinstance(value, classad2.Value) or _reads_target(ad, raw):
        return Expression(str(raw))
    return _value(value)


def _reads_target(ad: classad2.ClassAd, expr: classad2.ExprTree) -> bool:
    return any(ref.upper().startswith("TARGET.") for ref in ad.externalRefs(expr))


def _value(value: Any) -> Any:
    """A ClassAd value as plain Python, so it can leave the child process."""
    if isinstance(value, classad2.ClassAd):
        return {key: _value(value.eval(key)) for key in value}
    if isinstance(value, list):
        return [_value(item) for item in value]
    if isinstance(value, classad2.ExprTree):
        return str(value)
    return value


def _plain(ad: classad2.ClassAd, projection: Iterable[str]) -> Ad:
    """The projected attributes as Python values; absent ones are left out."""
    wanted = list(projection) or list(ad.keys())
    return {key: _value(ad.eval(key)) for key in wanted if key in ad}


def _reason(text: str) -> tuple[str, None]:
    """The form of a reason `htcondor2.Schedd.act` actually sends.

    The bindings (seen in 25.14) drop a plain-string reason and send none, so
    RemoveReason and HoldReason would stay empty; only a (text, code) tuple
    reaches the schedd. The code None is what they send anyway.
    """
    return (text, None)


@dataclass(frozen=True)
class Collector:
    """A collector by address (host:port); every call within `budget`."""

    address: str
    timeout: float = DEFAULT_TIMEOUT
    budget: CallBudget | None = None
    """Shared by one cycle's adapters; None: a budget of `timeout` for this adapter alone."""
    _own_budget: CallBudget = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_own_budget", self.budget or CallBudget(self.timeout))

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return _call(f"{what} collector {self.address}", f"collector {self.address}", self._own_budget, fn)

    def query(self, ad_type: htcondor2.AdType, constraint: str = "true", projection: Iterable[str] = ()) -> list[Ad]:
        wanted = list(projection)

        def query() -> list[Ad]:
            ads = htcondor2.Collector(self.address).query(ad_type, constraint, wanted or None)
            return [_plain(ad, wanted) for ad in ads]

        return self._call("query of", query)

    def advertise(self, ads: Iterable[Mapping[str, Any]]) -> None:
        """Create or replace generic ads (UPDATE_AD_GENERIC), matched by MyType and Name."""
        plain = [_sendable(ad) for ad in ads]
        if plain:
            self._call(
                "advertising to",
                lambda: htcondor2.Collector(self.address).advertise(
                    [classad2.ClassAd(ad) for ad in plain], "UPDATE_AD_GENERIC"
                ),
            )

    def invalidate(self, my_type: str, constraint: str) -> None:
        """Withdraw every generic ad of `my_type` that matches `constraint`."""

        def invalidate() -> None:
            query = classad2.ClassAd({"MyType": "Query", "TargetType": my_type})
            query["Requirements"] = classad2.ExprTree(constraint)
            htcondor2.Collector(self.address).advertise([query], "INVALIDATE_ADS_GENERIC")

        self._call("invalidating ads in", invalidate)

    def generic_ads(self, my_type: str, constraint: str = "true", projection: Iterable[str] = ()) -> list[Ad]:
        """Generic ads of one MyType (the collector keeps them outside the Generic table)."""
        return self.query(htcondor2.AdType.Any, f"MyType == {classad2.quote(my_type)} && ({constraint})", projection)

    def schedd(self, name: str) -> Schedd:
        """The schedd `name` as this collector locates it, sharing this collector's budget."""

        def locate() -> str:
            return repr(htcondor2.Collector(self.address).locate(htcondor2.DaemonType.Schedd, name))

        return Schedd(name, self._call(f"locating schedd {name!r} in", locate), self.timeout, self._own_budget)


@dataclass(frozen=True)
class Schedd:
    """A located schedd: submit, query and act on its jobs, every call within `budget`."""

    name: str
    location: str
    """The schedd's location ad, as ClassAd text (it crosses from the locating child process)."""
    timeout: float = DEFAULT_TIMEOUT
    budget: CallBudget | None = None
    _own_budget: CallBudget = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_own_budget", self.budget or CallBudget(self.timeout))

    def _call(self, what: str, fn: Callable[[htcondor2.Schedd], T], part: str = "") -> T:
        """`fn` on a fresh handle, made in the child so that even connecting is under the deadline.

        `part` names a service of the schedd that may be slow on its own (its history, read from
        files): missing a deadline there does not make the queue unreachable for the cycle."""
        return _call(
            f"{what} schedd {self.name}",
            f"schedd {self.name}{part}",
            self._own_budget,
            lambda: fn(htcondor2.Schedd(classad2.ClassAd(self.location))),
        )

    def submit(self, description: Mapping[str, str], count: int = 1) -> int:
        """Queue `count` jobs of one description; returns the cluster id."""
        plain = dict(description)
        return self._call("submit to", lambda s: s.submit(htcondor2.Submit(plain), count=count).cluster())

    def query(self, constraint: str = "true", projection: Iterable[str] = ()) -> list[Ad]:
        wanted = list(projection)
        return self._call("query of", lambda s: [_plain(ad, wanted) for ad in s.query(constraint, wanted)])

    def grouped(self, constraint: str, attributes: Iterable[str]) -> list[Ad]:
        """Jobs grouped by the schedd itself: one ad per distinct value tuple, with JobCount.

        A million idle jobs come back as one record per shape, so neither the
        wire nor the frontend ever handles jobs one by one.
        """
        by = list(attributes)
        return self._call(
            "grouped query of",
            lambda s: [
                {key: _grouped_value(ad, key) for key in [*by, "JobCount"] if key in ad}
                for ad in s.query(constraint, by, opts=htcondor2.QueryOpt.GroupBy)
            ],
        )

    def history(self, constraint: str, projection: Iterable[str] = (), limit: int = -1) -> list[Ad]:
        wanted = list(projection)
        return self._call(
            "history of",
            lambda s: [_plain(ad, wanted) for ad in s.history(constraint, wanted, match=limit)],
            part=" history",
        )

    def act_on_jobs(self, action: htcondor2.JobAction, job_ids: Iterable[str], reason: str) -> None:
        """Remove, release or hold the listed jobs ("cluster.proc") in one command."""
        ids = list(job_ids)
        if ids:
            self._call(
                f"{action.name.lower()} of {len(ids)} job(s) on", lambda s: _done(s.act(action, ids, _reason(reason)))
            )

    def remove(self, constraint: str, reason: str) -> None:
        self._call("remove on", lambda s: _done(s.act(htcondor2.JobAction.Remove, constraint, _reason(reason))))


def _sendable(ad: Mapping[str, Any]) -> Ad:
    """The ad as it may be sent: a control character in a value is dropped, and said so."""
    cleaned, changed = protocol.sendable(ad)
    if changed:
        log.warning("ad %r: control characters removed from %s before advertising", str(ad.get("Name"))[:80], changed)
    return cleaned


def _done(_result: object) -> None:
    """Drop a binding's result object: only plain values cross back from the child."""
