"""The one place Updraft talks to HTCondor daemons.

Every call goes through `_call`, which runs it on a worker thread with a
deadline and turns HTCondor's exceptions into `CondorError`: a daemon that
is down or slow costs a cycle one timeout, never a hang. Results leave this
module as plain dicts of the projected attributes, so the code that
decides never touches a binding object.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import classad2
import htcondor2

from updraft.errors import CondorError

T = TypeVar("T")
DEFAULT_TIMEOUT = 30.0
Ad = dict[str, Any]


def use_client_config(path: Path | None) -> None:
    """Point this process's HTCondor client at a config file (None: keep the environment's).

    The bindings keep one configuration per process, so this is called once,
    at start-up (and on a reload), by the command that owns the process.
    """
    if path is None:
        return
    os.environ["CONDOR_CONFIG"] = str(path)
    htcondor2.reload_config()


def _call(what: str, fn: Callable[..., T], *args: Any, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> T:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="condor")
    try:
        return pool.submit(fn, *args, **kwargs).result(timeout=timeout)
    except FutureTimeout:
        raise CondorError(f"{what}: no answer within {timeout:g} s") from None
    except (htcondor2.HTCondorException, classad2.ClassAdException, RuntimeError, ValueError) as err:
        raise CondorError(f"{what}: {err}") from err
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _plain(ad: classad2.ClassAd, projection: Iterable[str]) -> Ad:
    """The projected attributes as Python values; absent ones are left out."""
    wanted = list(projection) or list(ad.keys())
    return {key: ad.eval(key) for key in wanted if key in ad}


def _reason(text: str) -> tuple[str, None]:
    """The form of a reason `htcondor2.Schedd.act` actually sends.

    The bindings (seen in 25.14) drop a plain-string reason and send none, so
    RemoveReason and HoldReason would stay empty; only a (text, code) tuple
    reaches the schedd. The code None is what they send anyway.
    """
    return (text, None)


@dataclass(frozen=True)
class Collector:
    """A collector by address (host:port)."""

    address: str
    timeout: float = DEFAULT_TIMEOUT

    def query(self, ad_type: htcondor2.AdType, constraint: str = "true", projection: Iterable[str] = ()) -> list[Ad]:
        projection = list(projection)
        ads = _call(
            f"query of collector {self.address}",
            htcondor2.Collector(self.address).query,
            ad_type,
            constraint,
            projection or None,
            timeout=self.timeout,
        )
        return [_plain(ad, projection) for ad in ads]

    def advertise(self, ads: Iterable[Mapping[str, Any]]) -> None:
        """Create or replace generic ads (UPDATE_AD_GENERIC), matched by MyType and Name."""
        class_ads = [classad2.ClassAd(dict(ad)) for ad in ads]
        if class_ads:
            _call(f"advertising to collector {self.address}", htcondor2.Collector(self.address).advertise,
                  class_ads, "UPDATE_AD_GENERIC", timeout=self.timeout)

    def invalidate(self, my_type: str, constraint: str) -> None:
        """Withdraw every generic ad of `my_type` that matches `constraint`."""
        query = classad2.ClassAd({"MyType": "Query", "TargetType": my_type})
        query["Requirements"] = classad2.ExprTree(constraint)
        _call(f"invalidating ads in collector {self.address}", htcondor2.Collector(self.address).advertise,
              [query], "INVALIDATE_ADS_GENERIC", timeout=self.timeout)

    def generic_ads(self, my_type: str, constraint: str = "true", projection: Iterable[str] = ()) -> list[Ad]:
        """Generic ads of one MyType (the collector keeps them outside the Generic table)."""
        return self.query(htcondor2.AdType.Any, f"MyType == {classad2.quote(my_type)} && ({constraint})", projection)

    def schedd(self, name: str) -> Schedd:
        location = _call(
            f"locating schedd {name!r} in collector {self.address}",
            htcondor2.Collector(self.address).locate,
            htcondor2.DaemonType.Schedd,
            name,
            timeout=self.timeout,
        )
        if location is None:
            raise CondorError(f"schedd {name!r} is not advertised in collector {self.address}")
        return Schedd(name, location, self.timeout)


@dataclass(frozen=True)
class Schedd:
    """A located schedd: submit, query and act on its jobs."""

    name: str
    location: classad2.ClassAd
    timeout: float = DEFAULT_TIMEOUT

    def _on_handle(self, method: str) -> Callable[..., Any]:
        """A call on a fresh handle, made inside `_call` so that even connecting is guarded."""
        return lambda *args, **kwargs: getattr(htcondor2.Schedd(self.location), method)(*args, **kwargs)

    def submit(self, description: Mapping[str, str], count: int = 1) -> int:
        """Queue `count` jobs of one description; returns the cluster id."""
        submit = htcondor2.Submit(dict(description))
        result = _call(f"submit to schedd {self.name}", self._on_handle("submit"), submit, count=count, timeout=self.timeout)
        return result.cluster()

    def query(self, constraint: str = "true", projection: Iterable[str] = ()) -> list[Ad]:
        projection = list(projection)
        ads = _call(
            f"query of schedd {self.name}", self._on_handle("query"), constraint, projection, timeout=self.timeout
        )
        return [_plain(ad, projection) for ad in ads]

    def grouped(self, constraint: str, attributes: Iterable[str]) -> list[Ad]:
        """Jobs grouped by the schedd itself: one ad per distinct value tuple, with JobCount.

        A million idle jobs come back as one record per shape, so neither the
        wire nor the frontend ever handles jobs one by one.
        """
        attributes = list(attributes)
        ads = _call(
            f"grouped query of schedd {self.name}",
            self._on_handle("query"),
            constraint,
            attributes,
            opts=htcondor2.QueryOpt.GroupBy,
            timeout=self.timeout,
        )
        return [_plain(ad, [*attributes, "JobCount"]) for ad in ads]

    def history(self, constraint: str, projection: Iterable[str] = (), limit: int = -1) -> list[Ad]:
        projection = list(projection)
        ads = _call(
            f"history of schedd {self.name}",
            self._on_handle("history"),
            constraint,
            projection,
            match=limit,
            timeout=self.timeout,
        )
        return [_plain(ad, projection) for ad in ads]

    def act_on_jobs(self, action: htcondor2.JobAction, job_ids: Iterable[str], reason: str) -> None:
        """Remove, release or hold the listed jobs ("cluster.proc") in one command."""
        ids = list(job_ids)
        if ids:
            _call(f"{action.name.lower()} of {len(ids)} job(s) on schedd {self.name}", self._on_handle("act"),
                  action, ids, _reason(reason), timeout=self.timeout)

    def remove(self, constraint: str, reason: str) -> None:
        _call(
            f"remove on schedd {self.name}",
            self._on_handle("act"),
            htcondor2.JobAction.Remove,
            constraint,
            _reason(reason),
            timeout=self.timeout,
        )
