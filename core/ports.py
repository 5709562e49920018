"""The ports through which the services observe and act: one per HTCondor role they use.

A cycle builds its ports once (`updraft.condor` for the real daemons,
`updraft.fakes` for tests) and passes them down to observe, advertise, act
and publish, so nothing below the loop constructs an adapter, and both
services' `run_cycle` can be run with no daemon at all.

Every method raises `CondorError` when the daemon refused, failed, or did not
answer within the cycle's deadline (a bug still raises what it raises).
Callers turn it into a problem of the cycle and treat what they could not
read as unknown: never as "no jobs", "no pilots" or "no requests to keep".
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import htcondor2

from updraft.errors import CondorError

Ad = dict[str, Any]


class SchedulerPort(Protocol):
    """A schedd: its queue, its history, and the commands that change them."""

    @property
    def name(self) -> str: ...

    def query(self, constraint: str = "true", projection: Iterable[str] = ()) -> list[Ad]: ...

    def grouped(self, constraint: str, attributes: Iterable[str]) -> list[Ad]: ...

    def history(self, constraint: str, projection: Iterable[str] = (), limit: int = -1) -> list[Ad]: ...

    def submit(self, description: Mapping[str, str], count: int = 1) -> int: ...

    def act_on_jobs(self, action: htcondor2.JobAction, job_ids: Iterable[str], reason: str) -> None: ...

    def remove(self, constraint: str, reason: str) -> None: ...


class CollectorPort(Protocol):
    """A collector: ads to read, generic ads to send and withdraw, schedds to locate."""

    @property
    def address(self) -> str: ...

    def query(
        self, ad_type: htcondor2.AdType, constraint: str = "true", projection: Iterable[str] = ()
    ) -> list[Ad]: ...

    def generic_ads(self, my_type: str, constraint: str = "true", projection: Iterable[str] = ()) -> list[Ad]: ...

    def advertise(self, ads: Iterable[Mapping[str, Any]]) -> None: ...

    def invalidate(self, my_type: str, constraint: str) -> None: ...

    def schedd(self, name: str) -> SchedulerPort: ...


class LocatedSchedd:
    """A schedd located through a collector at first use, then reused for the rest of the cycle.

    A failure to locate it is remembered too: the cycle asks the collector
    once, not once per stage that needs the schedd.
    """

    def __init__(self, collector: CollectorPort, name: str) -> None:
        self.collector = collector
        self.name = name
        self._lock = threading.Lock()
        self._found: SchedulerPort | None = None
        self._failure: CondorError | None = None

    def get(self) -> SchedulerPort:
        """The schedd, or the CondorError that locating it raised this cycle."""
        with self._lock:
            if self._found is None and self._failure is None:
                try:
                    self._found = self.collector.schedd(self.name)
                except CondorError as err:
                    self._failure = err
            if self._failure is not None:  # a new exception: one object raised from many threads grows its traceback
                raise CondorError(str(self._failure))
            assert self._found is not None
            return self._found
