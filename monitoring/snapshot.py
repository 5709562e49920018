"""The typed snapshots components hand to monitoring once per cycle.

Writers see only these frozen values, never a component's internals, so a
writer can neither change provisioning nor depend on how it is computed.
Numbers a writer stores over time (RRD, InfluxDB) are derived from these
by `updraft.monitoring.metrics`; the XML, JSON and HTML writers show the
snapshot itself, names of the limits hit included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# --------------------------------------------------------------------------
# Frontend
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupEntryRow:
    """One (group, entry) of a frontend cycle: what it saw and what it asked for."""

    group: str
    entry: str
    jobs_idle: float
    """Idle jobs matched to this entry (a job matching n entries counts 1/n on each)."""
    jobs_old_idle: float
    jobs_running: float
    slots_total: int
    slots_idle: int
    slots_running: int
    slots_failed: int
    slots_cores: int
    requested_idle: int
    requested_max: int
    remove: str
    bound_by: tuple[str, ...] = ()
    in_downtime: bool = False
    jobs_refused: float = 0.0
    """Idle jobs of shapes not counted on this entry because its idle pilots kept refusing them
    (the group's ``idle_feedback``); a job refused on n entries counts on each."""
    health: str = "active"
    """The entry's health state as its factory advertised it (active, degraded, banned, probing); active
    also when the factory advertised none. A banned entry's request is 0, a degraded one's within the cap."""

    @property
    def curbs_hit(self) -> tuple[str, ...]:
        return tuple(b for b in self.bound_by if b.endswith(".curb"))

    @property
    def limits_hit(self) -> tuple[str, ...]:
        return tuple(b for b in self.bound_by if not b.endswith(".curb"))


@dataclass(frozen=True)
class RestartRow:
    """Jobs of one group still queued that started more than once, by the entry they last ran on
    (``entry@factory``, or "unknown" when their schedd did not record it)."""

    group: str
    entry: str
    restarted_jobs: int = 0
    """Queued jobs with NumJobStarts > 1."""
    restarts: int = 0
    """Their starts beyond the first: sum of NumJobStarts - 1."""
    restarts_last_hour: int = 0
    """Of those jobs, the ones whose latest start (a restart) was in the hour before the cycle."""
    badput_seconds: float = 0.0
    """Wall time of their finished runs that did not count: RemoteWallClockTime - CommittedTime."""
    badput_core_seconds: float = 0.0
    """The same, times each job's RequestCpus."""


RESTART_FIGURES = ("restarted_jobs", "restarts", "restarts_last_hour", "badput_seconds", "badput_core_seconds")


FRONTEND_SUMS = (
    "jobs_idle",
    "jobs_old_idle",
    "jobs_running",
    "jobs_refused",
    "slots_total",
    "slots_idle",
    "slots_running",
    "slots_failed",
    "slots_cores",
    "requested_idle",
    "requested_max",
)


@dataclass(frozen=True)
class FrontendSnapshot:
    """A whole frontend cycle."""

    frontend: str
    time: float
    cycle: int
    rows: tuple[GroupEntryRow, ...] = ()
    unmatched_jobs: Mapping[str, int] = field(default_factory=dict)
    """Idle jobs per group that matched no entry."""
    downtime_jobs: Mapping[str, int] = field(default_factory=dict)
    """Idle jobs per group whose only matching entries are in downtime."""
    problems: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    """Seconds spent in each phase: observe, decide, publish."""
    restarts: tuple[RestartRow, ...] = ()
    """Restarted jobs per (group, entry they last ran on); a group whose jobs could not all be read has none."""
    restarts_unknown: tuple[str, ...] = ()
    """Groups whose restarted jobs could not all be read this cycle (a schedd failed): no figures, not zeros."""

    @property
    def groups(self) -> tuple[str, ...]:
        """Every group with a row, unmatched jobs, jobs waiting on a downtime or restarted jobs, sorted."""
        named = {r.group for r in self.rows} | {r.group for r in self.restarts}
        return tuple(sorted(named | set(self.unmatched_jobs) | set(self.downtime_jobs)))

    def rows_of(self, group: str) -> tuple[GroupEntryRow, ...]:
        return tuple(r for r in self.rows if r.group == group)

    def restarts_of(self, group: str) -> tuple[RestartRow, ...]:
        return tuple(r for r in self.restarts if r.group == group)

    def restart_totals(self, group: str | None = None) -> dict[str, float]:
        """Restart figures summed over a group's entries, or over every row when `group` is None."""
        rows = self.restarts if group is None else self.restarts_of(group)
        return {key: float(sum(getattr(row, key) for row in rows)) for key in RESTART_FIGURES}

    def group_totals(self, group: str) -> dict[str, float]:
        """Sums over the group's entries; `jobs_matched` is its idle jobs that some entry can run."""
        totals = _sums(self.rows_of(group))
        totals["jobs_matched"] = totals["jobs_idle"]
        totals["jobs_unmatched"] = float(self.unmatched_jobs.get(group, 0))
        totals["jobs_downtime"] = float(self.downtime_jobs.get(group, 0))
        return totals

    def totals(self) -> dict[str, float]:
        """Sums over every row, for pages and dashboards that show the frontend as a whole."""
        totals = _sums(self.rows)
        totals["jobs_matched"] = totals["jobs_idle"]
        totals["jobs_unmatched"] = float(sum(self.unmatched_jobs.values()))
        totals["jobs_downtime"] = float(sum(self.downtime_jobs.values()))
        return totals

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["totals"] = self.totals()
        return data


def _sums(rows: tuple[GroupEntryRow, ...]) -> dict[str, float]:
    return {key: float(sum(getattr(row, key) for row in rows)) for key in FRONTEND_SUMS}


# --------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------

PILOT_STATES = ("waiting", "pending", "staging", "running", "held")


@dataclass(frozen=True)
class PilotRow:
    """One (entry, frontend) of a factory cycle: its pilots by state and what was asked and done.

    The frontend's groups are summed: the factory's limits and its operator
    think in frontends; the groups are the frontend's business.
    """

    entry: str
    frontend: str
    waiting: int = 0
    pending: int = 0
    staging: int = 0
    running: int = 0
    held: int = 0
    cores_running: int = 0
    requested_idle: int = 0
    requested_max: int = 0
    submitted: int = 0
    removed: int = 0
    released: int = 0
    limits_hit: tuple[str, ...] = ()
    held_by_kind: Mapping[str, int] = field(default_factory=dict)
    """The held pilots by kind of hold (`updraft.factory.holds.HOLD_KINDS`): a batch system that
    refused them, one that could not be reached, or another hold. Kinds with none are left out."""

    @property
    def idle(self) -> int:
        return self.waiting + self.pending + self.staging


@dataclass(frozen=True)
class EntryStatus:
    """One advertised entry as a whole: every pilot on it, whoever asked for it."""

    entry: str
    in_downtime: bool = False
    cores_per_pilot: int = 1
    waiting: int = 0
    pending: int = 0
    staging: int = 0
    running: int = 0
    held: int = 0

    @property
    def idle(self) -> int:
        return self.waiting + self.pending + self.staging


@dataclass(frozen=True)
class CompletedRow:
    """Running totals over every pilot of an (entry, frontend) that has left the queue.

    Totals, not this cycle's increments: a writer that missed cycles loses
    nothing, and rates come from differences (RRD DERIVE, InfluxQL
    ``non_negative_derivative``).
    """

    entry: str
    frontend: str
    pilots: int = 0
    ok: int = 0
    failed: int = 0
    no_report: int = 0
    removed: int = 0
    lifetime_seconds: int = 0
    jobs_run: int = 0
    pilots_without_jobs: int = 0
    core_seconds: int = 0
    busy_core_seconds: int = 0
    goodput_core_seconds: int = 0
    waste_core_seconds: int = 0
    failed_by_step: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CloudRow:
    """One cloud entry's instances, as the EC2 API listed them this cycle (absent when it could not).

    `entry` is "_unconfigured" for instances whose entry tag names no configured entry."""

    entry: str
    states: Mapping[str, int] = field(default_factory=dict)
    """Listed instances by EC2 state (pending, running, stopping, stopped, shutting-down)."""
    unknown: int = 0
    """Instances no queued pilot of this factory claims (past the grace after launch)."""


COMPLETED_COUNTERS = tuple(
    f.name for f in fields(CompletedRow) if f.name not in ("entry", "frontend", "failed_by_step")
)
"""The counters of `CompletedRow`, in field order: every total but the names and the steps."""


@dataclass(frozen=True)
class HealthRow:
    """One advertised entry's health state this cycle (`updraft.factory.health_model.EntryHealth`)."""

    entry: str
    state: str
    """"active", "degraded", "banned" or "probing"."""
    reason: str = ""
    since: float = 0.0
    next_review: float | None = None
    cap: int | None = None
    override_by: str | None = None
    """The operator whose override sets the state; None when the policy does."""
    override_until: float | None = None


@dataclass(frozen=True)
class TransitionRow:
    """One change of an entry's health state (`updraft.factory.health_model.Transition`)."""

    entry: str
    old: str
    new: str
    reason: str
    at: float
    by: str
    """"policy", or the operator whose override caused it."""
    key: str
    """Unique per change: what notifiers remember so nothing is announced twice."""


@dataclass(frozen=True)
class FactorySnapshot:
    """A whole factory cycle."""

    factory: str
    time: float
    cycle: int
    entries: tuple[EntryStatus, ...] = ()
    pilots: tuple[PilotRow, ...] = ()
    completed: tuple[CompletedRow, ...] = ()
    rejected_requests: int = 0
    problems: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    """Seconds spent in each phase: observe, decide, act, account."""
    cloud: tuple[CloudRow, ...] = ()
    health: tuple[HealthRow, ...] = ()
    """Every advertised entry's health state, by entry name."""
    transitions: tuple[TransitionRow, ...] = ()
    """The health changes this cycle made, in the order they happened."""
    announce: tuple[TransitionRow, ...] = ()
    """The changes for the notifiers: this cycle's, after earlier ones not yet queued in their outbox
    (a notifier writer that failed or was skipped); the outbox knows each by its key."""

    def rows_of(self, entry: str) -> tuple[PilotRow, ...]:
        return tuple(r for r in self.pilots if r.entry == entry)

    def completed_of(self, entry: str) -> tuple[CompletedRow, ...]:
        return tuple(r for r in self.completed if r.entry == entry)

    def totals(self) -> dict[str, float]:
        """Pilots by state over every entry, and what frontends asked and the factory did."""
        totals = {state: float(sum(getattr(e, state) for e in self.entries)) for state in PILOT_STATES}
        totals["idle"] = totals["waiting"] + totals["pending"] + totals["staging"]
        for key in ("cores_running", "requested_idle", "requested_max", "submitted", "removed", "released"):
            totals[key] = float(sum(getattr(r, key) for r in self.pilots))
        totals["entries_in_downtime"] = float(sum(e.in_downtime for e in self.entries))
        return totals

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["totals"] = self.totals()
        return data


Snapshot = FactorySnapshot | FrontendSnapshot
"""What a writer is handed: one component's cycle."""


def component_of(snapshot: Snapshot) -> tuple[str, str]:
    """("factory" or "frontend", its name): how writers name what they write."""
    if isinstance(snapshot, FactorySnapshot):
        return "factory", snapshot.factory
    return "frontend", snapshot.frontend
