"""Jobs that restart: read from the user schedds, summed per (group, entry) for monitoring.

A job that starts more than once was evicted (its pilot died, was killed at
the site, or a black-hole entry lost it) and ran again. The schedd keeps
the count (`NumJobStarts`), when the latest runs began, and two clocks:
`RemoteWallClockTime` (every finished run's wall time) and `CommittedTime`
(only the runs that counted: ended by the job's exit or a checkpoint).
Neither includes the run in progress; their difference is the wall time of
runs thrown away, the badput.

Which entry a job ran on comes from the schedd: with
``SYSTEM_JOB_MACHINE_ATTRS = GLIDEIN_Entry_Name GLIDEIN_Factory`` in its
config, it copies the slot's attributes into the job at each match as
``MachineAttr<name>0`` (the most recent machine). A job without them counts
under the entry "unknown". Only jobs still in the queue are counted: the
figures say what the queue holds now, not a history.

Parsing and summing are pure, with `now` passed in; the query is in
`updraft.frontend.observe`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from updraft.adnumbers import finite_number, whole_or
from updraft.monitoring.snapshot import RESTART_FIGURES, RestartRow

UNKNOWN_ENTRY = "unknown"
"""The entry key of restarted jobs whose schedd did not record where they last ran."""
LAST_HOUR_SECONDS = 3600
ENTRY_ATTR = "MachineAttrGLIDEIN_Entry_Name0"
FACTORY_ATTR = "MachineAttrGLIDEIN_Factory0"
RESTART_PROJECTION = (
    "NumJobStarts",
    "RemoteWallClockTime",
    "CommittedTime",
    "JobCurrentStartDate",
    "JobLastStartDate",
    "RequestCpus",
    ENTRY_ATTR,
    FACTORY_ATTR,
)
"""What the frontend reads of a restarted job: nothing else crosses the wire."""


def restart_constraint(job_constraint: str) -> str:
    """The group's jobs that started more than once (any status: idle again, running again, held)."""
    return f"NumJobStarts > 1 && ({job_constraint})"


@dataclass(frozen=True, slots=True)
class RestartedJob:
    """One queued job of a group that started more than once, as its schedd reports it."""

    group: str
    entry: str
    """The entry it last ran on, as ``entry@factory`` (the key of `EntryAd`), or `UNKNOWN_ENTRY`."""
    starts: int
    wall_seconds: float = 0.0
    """RemoteWallClockTime: every finished run."""
    committed_seconds: float = 0.0
    """CommittedTime: the finished runs that counted."""
    latest_start: float | None = None
    """When its latest run began (JobCurrentStartDate; JobLastStartDate if that is missing)."""
    cpus: int = 1

    @property
    def restarts(self) -> int:
        return max(0, self.starts - 1)

    @property
    def badput_seconds(self) -> float:
        """Wall time of finished runs that did not count; never negative (a clock that went back is 0)."""
        return max(0.0, self.wall_seconds - self.committed_seconds)


def entry_key(ad: Mapping[str, Any]) -> str:
    """``entry@factory`` of the machine the job last ran on, or `UNKNOWN_ENTRY` when either is missing."""
    entry, factory = ad.get(ENTRY_ATTR), ad.get(FACTORY_ATTR)
    if isinstance(entry, str) and isinstance(factory, str) and entry and factory:
        return f"{entry}@{factory}"
    return UNKNOWN_ENTRY


def restarted_job(group: str, ad: Mapping[str, Any]) -> RestartedJob | None:
    """The job, or None when it has not started more than once (a constraint the schedd did not apply)."""
    starts = whole_or(ad.get("NumJobStarts"), 0)
    if starts <= 1:
        return None
    starts_at = [t for t in (finite_number(ad.get(a)) for a in ("JobCurrentStartDate", "JobLastStartDate")) if t]
    return RestartedJob(
        group=group,
        entry=entry_key(ad),
        starts=starts,
        wall_seconds=finite_number(ad.get("RemoteWallClockTime")) or 0.0,
        committed_seconds=finite_number(ad.get("CommittedTime")) or 0.0,
        latest_start=max(starts_at) if starts_at else None,
        cpus=max(1, whole_or(ad.get("RequestCpus"), 1)),
    )


def restart_rows(
    jobs: Iterable[RestartedJob],
    now: float,
    unread: Iterable[str] = (),
    known: Iterable[tuple[str, str]] = (),
) -> tuple[RestartRow, ...]:
    """Per (group, entry), sorted: restarted jobs, their restarts, those restarted in the last hour, badput.

    `restarts_last_hour` counts jobs whose latest start, a restart since they
    started before, lies in the hour before `now` (a start "in the future",
    from a skewed clock, counts too). A job restarted several times within
    the hour counts once: the schedd keeps only its latest two starts.

    Each (group, entry) in `known` (the cycle's decisions) gets a row, of
    zeros when none of its jobs restarted: a graph drops to 0 when the
    restarted jobs leave the queue instead of keeping their last value.
    Groups in `unread` (a schedd of theirs could not be read) get no row at
    all: their figures are unknown this cycle, never a partial sum.
    """
    skipped = set(unread)
    sums: dict[tuple[str, str], dict[str, float]] = {
        pair: dict.fromkeys(RESTART_FIGURES, 0.0) for pair in known if pair[0] not in skipped
    }
    for job in jobs:
        if job.group in skipped:
            continue
        row = sums.setdefault((job.group, job.entry), dict.fromkeys(RESTART_FIGURES, 0.0))
        row["restarted_jobs"] += 1
        row["restarts"] += job.restarts
        if job.latest_start is not None and job.latest_start > now - LAST_HOUR_SECONDS:
            row["restarts_last_hour"] += 1
        row["badput_seconds"] += job.badput_seconds
        row["badput_core_seconds"] += job.badput_seconds * job.cpus
    return tuple(
        RestartRow(
            group=group,
            entry=entry,
            restarted_jobs=int(row["restarted_jobs"]),
            restarts=int(row["restarts"]),
            restarts_last_hour=int(row["restarts_last_hour"]),
            badput_seconds=row["badput_seconds"],
            badput_core_seconds=row["badput_core_seconds"],
        )
        for (group, entry), row in sorted(sums.items())
    )
