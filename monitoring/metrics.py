"""The catalogue of what Updraft stores over time, and how a snapshot becomes those numbers.

One catalogue serves every time-series writer: the RRD writer makes one
data source per field, the InfluxDB writer one field per field, and the
Grafana dashboards and docs/metrics.md are checked against it. A metric
is added here once and appears everywhere, with the same name.

Names follow the limits of the strictest backend: RRD data-source names
are at most 19 characters of ``[a-zA-Z0-9_]``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from updraft.monitoring.snapshot import (
    COMPLETED_COUNTERS,
    PILOT_STATES,
    RESTART_FIGURES,
    CloudRow,
    EntryStatus,
    FactorySnapshot,
    FrontendSnapshot,
    GroupEntryRow,
    HealthRow,
    PilotRow,
    Snapshot,
    TransitionRow,
)

FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,18}")


class Kind(str, Enum):
    GAUGE = "gauge"
    """A level at the time of the cycle (pilots running now)."""
    COUNTER = "counter"
    """A running total that only grows, except when reset; rates are its differences."""


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Kind
    unit: str
    help: str


@dataclass(frozen=True)
class TextSpec:
    """A field holding words, not a number (a transition's reason): InfluxDB stores it as a string
    field; RRD and VictoriaMetrics, which hold numbers only, never see it."""

    name: str
    help: str


@dataclass(frozen=True)
class MeasurementSpec:
    name: str
    tags: tuple[str, ...]
    fields: tuple[FieldSpec, ...]
    help: str
    texts: tuple[TextSpec, ...] = ()
    event: bool = False
    """One point per thing that happened, stamped with when it happened, not one per cycle: an RRD file
    holds one value per step of a fixed series, so the rrd writer leaves events to InfluxDB."""

    def field(self, name: str) -> FieldSpec:
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.name} has no field {name}")

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True)
class Measurement:
    """One row of numbers for one measurement and one set of tag values, at one time."""

    spec: MeasurementSpec
    tags: tuple[tuple[str, str], ...]
    """(tag, value) in the order of `spec.tags`."""
    values: Mapping[str, float]
    time: float
    texts: Mapping[str, str] = field(default_factory=dict)
    """The values of `spec.texts`, by name."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def tag_values(self) -> tuple[str, ...]:
        return tuple(v for _, v in self.tags)


def _g(name: str, unit: str, help_: str) -> FieldSpec:
    return FieldSpec(name, Kind.GAUGE, unit, help_)


def _c(name: str, unit: str, help_: str) -> FieldSpec:
    return FieldSpec(name, Kind.COUNTER, unit, help_)


_PILOT_STATE_FIELDS = (
    _g("waiting", "pilots", "idle in the factory schedd, not yet handed to the site"),
    _g("pending", "pilots", "queued at the site"),
    _g("staging", "pilots", "transferring files, about to start"),
    _g("idle", "pilots", "waiting + pending + staging: what requests are compared with"),
    _g("running", "pilots", "running at the site"),
    _g("held", "pilots", "held in the factory schedd"),
)

_ACTION_FIELDS = (
    _g("requested_idle", "pilots", "idle pilots the frontends asked for"),
    _g("requested_max", "pilots", "most pilots the frontends allow"),
    _g("submitted", "pilots", "submitted this cycle"),
    _g("removed", "pilots", "removed this cycle"),
    _g("released", "pilots", "released from hold this cycle"),
)

FACTORY = MeasurementSpec(
    "updraft_factory",
    ("factory",),
    (
        *_PILOT_STATE_FIELDS,
        _g("cores_running", "cores", "cores held by running pilots"),
        *_ACTION_FIELDS,
        _g("entries_down", "entries", "advertised entries in downtime"),
        _g("rejected_requests", "requests", "requests refused this cycle"),
        _g("problems", "problems", "problems this cycle (unreachable schedd, refused ads, failed submits)"),
        _g("observe_seconds", "s", "time spent reading the queue and the requests"),
        _g("decide_seconds", "s", "time spent deciding"),
        _g("act_seconds", "s", "time spent submitting, removing and releasing"),
        _g("account_seconds", "s", "time spent reading completed pilots' reports"),
    ),
    "The factory as a whole, once per cycle.",
)

FACTORY_ENTRY = MeasurementSpec(
    "updraft_factory_entry",
    ("factory", "entry"),
    (
        *_PILOT_STATE_FIELDS,
        _g("in_downtime", "0/1", "1 while the entry is in downtime"),
        _g("cores_per_pilot", "cores", "cores one pilot brings (GLIDEIN_CPUS x GLIDEIN_Nodes)"),
    ),
    "Each advertised entry: every pilot on it, whoever asked for it.",
)

FACTORY_PILOTS = MeasurementSpec(
    "updraft_factory_pilots",
    ("factory", "entry", "frontend"),
    (
        *_PILOT_STATE_FIELDS,
        _g("cores_running", "cores", "cores held by running pilots"),
        *_ACTION_FIELDS,
        _g("limits_hit", "limits", "factory limits that lowered this cycle's submissions or removals"),
    ),
    "Each (entry, frontend): the frontend's pilots, its requests summed over its groups, and what the factory did.",
)

FACTORY_COMPLETED = MeasurementSpec(
    "updraft_factory_completed",
    ("factory", "entry", "frontend"),
    (
        _c("pilots", "pilots", "pilots that left the queue"),
        _c("ok", "pilots", "pilots whose report says they ended well"),
        _c("failed", "pilots", "pilots whose report names a failed step"),
        _c("no_report", "pilots", "pilots that left no report (killed, lost output)"),
        _c("removed", "pilots", "pilots the factory or an operator removed"),
        _c("lifetime_seconds", "s", "summed lifetime of reported pilots"),
        _c("jobs_run", "jobs", "user jobs the pilots ran"),
        _c("pilots_without_jobs", "pilots", "reported pilots that ran no job"),
        _c("core_seconds", "core-s", "cores x lifetime: what the pilots held"),
        _c("busy_core_seconds", "core-s", "core-seconds the pilots' slots were claimed"),
        _c("good_core_seconds", "core-s", "core-seconds of jobs that ended well (goodput)"),
        _c("waste_core_seconds", "core-s", "core-seconds held but never busy"),
    ),
    "Running totals from the reports of pilots that have left the queue (counters: graph their rate).",
)

FACTORY_FAILURES = MeasurementSpec(
    "updraft_factory_failures",
    ("factory", "entry", "frontend", "step"),
    (_c("pilots", "pilots", "pilots that failed at this glidein step"),),
    "Failed pilots by the glidein step that failed (running totals).",
)

FACTORY_HOLDS = MeasurementSpec(
    "updraft_factory_holds",
    ("factory", "entry", "frontend", "kind"),
    (_g("held", "pilots", "held pilots of this kind this cycle (a refused one is removed in the same cycle)"),),
    "Held pilots by kind of hold: batch_refused (the batch system said no: bad partition, too much memory),"
    " batch_unreachable (its submit command could not reach it), other.",
)

FACTORY_CLOUD_INSTANCES = MeasurementSpec(
    "updraft_factory_cloud_instances",
    ("factory", "entry", "state"),
    (_g("instances", "instances", "instances in this EC2 state tagged with this factory and entry"),),
    "A cloud entry's instances as the EC2 API lists them, by state; none when the API could not be read"
    " (entry _unconfigured: instances whose entry tag names no configured entry).",
)

FACTORY_CLOUD_UNKNOWN = MeasurementSpec(
    "updraft_factory_cloud_unknown_instances",
    ("factory", "entry"),
    (_g("unknown", "instances", "instances no queued pilot of this factory claims (cloud money)"),),
    "A cloud entry's instances that belong to no pilot of this factory, past the grace after launch:"
    " reported every cycle, terminated when the entry says so.",
)

HEALTH_CODES: Mapping[str, int] = MappingProxyType({"active": 0, "degraded": 1, "probing": 2, "banned": 3})
"""An entry's health state as a number (`updraft.factory.health_model.HealthState`), for graphs.

Stable: stored values keep their meaning, so a new state gets a new number, never a reused one.
Ordered by how few pilots the entry gets (all it needs, capped, a few probes, none), so higher is
worse, a line graph rises as an entry breaks, and the maximum over an interval is its worst state.
A state this table lacks is stored as unknown (no value), never as a wrong number."""


def health_code(state: str) -> float:
    """The number of `state` in `HEALTH_CODES`, NaN (stored as unknown) for a state it does not know."""
    code = HEALTH_CODES.get(state)
    return math.nan if code is None else float(code)


_HEALTH_CODE_HELP = ", ".join(f"{code} {state}" for state, code in HEALTH_CODES.items())

FACTORY_HEALTH = MeasurementSpec(
    "updraft_factory_health",
    ("factory", "entry"),
    (
        _g("state", "code", f"the entry's health state: {_HEALTH_CODE_HELP}"),
        _g("overridden", "0/1", "1 while an operator's override, not the policy, sets the state"),
        _g("cap", "pilots", "most idle pilots kept queued for the entry (degraded, probing); none when uncapped"),
        _g("state_seconds", "s", "time since the entry entered its state"),
    ),
    "Each advertised entry's health state, once per cycle (a state-timeline shows `state` by entry).",
)

FACTORY_HEALTH_CHANGES = MeasurementSpec(
    "updraft_factory_health_changes",
    ("factory", "entry", "old", "new", "by"),
    (
        _g("changes", "changes", "1: one point per change"),
        _g("old_state", "code", "the state left, as `updraft_factory_health.state` codes it"),
        _g("new_state", "code", "the state entered, coded the same"),
    ),
    'Each change of an entry\'s health state, stamped with the time it happened; `by` is "policy" or the operator'
    " whose override caused it. An event, not a cycle's level: InfluxDB only (RRD holds fixed-step series).",
    texts=(TextSpec("reason", "why the state changed: the policy's finding or the operator's words"),),
    event=True,
)

FRONTEND = MeasurementSpec(
    "updraft_frontend",
    ("frontend",),
    (
        _g("jobs_idle", "jobs", "idle jobs matched to some entry"),
        _g("jobs_old_idle", "jobs", "matched jobs idle longer than the group's old_idle_seconds"),
        _g("jobs_running", "jobs", "running jobs"),
        _g("jobs_refused", "jobs", "idle jobs not counted on entries whose idle pilots keep refusing them"),
        _g("jobs_unmatched", "jobs", "idle jobs no entry can run"),
        _g("jobs_downtime", "jobs", "idle jobs whose only entries are in downtime"),
        _g("slots_total", "slots", "pilot slots in the VO pool"),
        _g("slots_idle", "slots", "unclaimed pilot slots"),
        _g("slots_running", "slots", "claimed pilot slots"),
        _g("slots_failed", "slots", "pilot slots that report a failure"),
        _g("slots_cores", "cores", "cores of the pilot slots"),
        _g("requested_idle", "pilots", "idle pilots requested from factories"),
        _g("requested_max", "pilots", "most pilots allowed"),
        _g("problems", "problems", "problems this cycle (unreachable schedd or collector)"),
        _g("observe_seconds", "s", "time spent reading jobs and slots"),
        _g("decide_seconds", "s", "time spent matching and deciding"),
        _g("publish_seconds", "s", "time spent publishing requests"),
    ),
    "The frontend as a whole, once per cycle.",
)

_MATCH_FIELDS = (
    _g("jobs_idle", "jobs", "idle jobs matched to the entry (a job matching n entries counts 1/n)"),
    _g("jobs_old_idle", "jobs", "of those, idle longer than old_idle_seconds"),
    _g("jobs_running", "jobs", "jobs running on the entry's pilots"),
    _g("jobs_refused", "jobs", "idle jobs not counted here: the entry's idle pilots kept refusing them"),
    _g("slots_total", "slots", "the entry's pilot slots for this group"),
    _g("slots_idle", "slots", "unclaimed"),
    _g("slots_running", "slots", "claimed"),
    _g("slots_failed", "slots", "reporting a failure"),
    _g("slots_cores", "cores", "cores of those slots"),
    _g("requested_idle", "pilots", "idle pilots requested"),
    _g("requested_max", "pilots", "most pilots allowed"),
)

FRONTEND_GROUP = MeasurementSpec(
    "updraft_frontend_group",
    ("frontend", "group"),
    (
        *_MATCH_FIELDS,
        _g("jobs_unmatched", "jobs", "idle jobs no entry can run"),
        _g("jobs_downtime", "jobs", "idle jobs whose only entries are in downtime"),
    ),
    "Each group, summed over its entries.",
)

FRONTEND_MATCH = MeasurementSpec(
    "updraft_frontend_match",
    ("frontend", "group", "entry"),
    (
        *_MATCH_FIELDS,
        _g("limits_hit", "limits", "limits that lowered the request this cycle"),
        _g("curbs_hit", "curbs", "curbs (near a maximum) that halved the request this cycle"),
        _g("in_downtime", "0/1", "1 while the entry is in downtime"),
    ),
    "Each (group, entry): the demand seen and the request made.",
)

FRONTEND_RESTARTS = MeasurementSpec(
    "updraft_frontend_restarts",
    ("frontend", "group", "entry"),
    (
        _g("restarted_jobs", "jobs", "queued jobs that started more than once (NumJobStarts > 1)"),
        _g("restarts", "starts", "their starts beyond the first: sum of NumJobStarts - 1"),
        _g("restarts_last_hour", "jobs", "of those jobs, the ones whose latest start was in the last hour"),
        _g(
            "badput_seconds",
            "s",
            "wall time of their finished runs that did not count (RemoteWallClockTime - CommittedTime)",
        ),
        _g("badput_core_seconds", "core-s", "the same times each job's RequestCpus"),
    ),
    'Each (group, entry the jobs last ran on; "unknown" when their schedd did not record it): queued jobs that'
    " restarted (evicted, their pilot gone) and the wall time their lost runs cost. Levels of what is queued now:"
    " jobs that left the queue are not counted. No point when a schedd of the group could not be read.",
)

CATALOGUE: tuple[MeasurementSpec, ...] = (
    FACTORY,
    FACTORY_ENTRY,
    FACTORY_PILOTS,
    FACTORY_COMPLETED,
    FACTORY_FAILURES,
    FACTORY_HOLDS,
    FACTORY_CLOUD_INSTANCES,
    FACTORY_CLOUD_UNKNOWN,
    FACTORY_HEALTH,
    FACTORY_HEALTH_CHANGES,
    FRONTEND,
    FRONTEND_GROUP,
    FRONTEND_MATCH,
    FRONTEND_RESTARTS,
)


def spec_named(name: str) -> MeasurementSpec:
    for spec in CATALOGUE:
        if spec.name == name:
            return spec
    raise KeyError(f"no measurement {name} in the catalogue")


# --------------------------------------------------------------------------
# Snapshot -> measurements
# --------------------------------------------------------------------------


def measurements(snapshot: Snapshot) -> list[Measurement]:
    """Every number of the cycle, as catalogue measurements stamped with the snapshot's time."""
    if isinstance(snapshot, FactorySnapshot):
        return list(_factory(snapshot))
    return list(_frontend(snapshot))


def _m(
    spec: MeasurementSpec,
    tag_values: tuple[str, ...],
    values: Mapping[str, float],
    time: float,
    texts: Mapping[str, str] | None = None,
) -> Measurement:
    return Measurement(
        spec,
        tuple(zip(spec.tags, tag_values, strict=True)),
        {name: float(values[name]) for name in spec.field_names},
        time,
        {text.name: (texts or {})[text.name] for text in spec.texts},
    )


def _states(source: EntryStatus | PilotRow) -> dict[str, float]:
    return {**{state: float(getattr(source, state)) for state in PILOT_STATES}, "idle": float(source.idle)}


def _factory(s: FactorySnapshot) -> Iterator[Measurement]:
    totals = s.totals()
    yield _m(
        FACTORY,
        (s.factory,),
        {
            **totals,
            "entries_down": totals["entries_in_downtime"],
            "rejected_requests": s.rejected_requests,
            "problems": len(s.problems),
            **{f"{phase}_seconds": s.timings.get(phase, 0.0) for phase in ("observe", "decide", "act", "account")},
        },
        s.time,
    )
    for e in s.entries:
        yield _m(
            FACTORY_ENTRY,
            (s.factory, e.entry),
            {**_states(e), "in_downtime": e.in_downtime, "cores_per_pilot": e.cores_per_pilot},
            s.time,
        )
    for r in s.pilots:
        yield _m(
            FACTORY_PILOTS,
            (s.factory, r.entry, r.frontend),
            {
                **_states(r),
                "cores_running": r.cores_running,
                "requested_idle": r.requested_idle,
                "requested_max": r.requested_max,
                "submitted": r.submitted,
                "removed": r.removed,
                "released": r.released,
                "limits_hit": len(r.limits_hit),
            },
            s.time,
        )
        for kind, count in sorted(r.held_by_kind.items()):
            yield _m(FACTORY_HOLDS, (s.factory, r.entry, r.frontend, kind), {"held": count}, s.time)
    for c in s.completed:
        values = {name: getattr(c, name) for name in COMPLETED_COUNTERS}
        values["good_core_seconds"] = c.goodput_core_seconds
        yield _m(FACTORY_COMPLETED, (s.factory, c.entry, c.frontend), values, s.time)
        for step, count in sorted(c.failed_by_step.items()):
            yield _m(FACTORY_FAILURES, (s.factory, c.entry, c.frontend, step), {"pilots": count}, s.time)
    for row in s.cloud:
        yield from _cloud(s, row)
    for health in s.health:
        yield _health(s, health)
    for change in s.transitions:
        yield _change(s, change)


def _health(s: FactorySnapshot, row: HealthRow) -> Measurement:
    """The row's state as numbers; an uncapped entry's cap is unknown (no value), not 0, which would cap all."""
    values = {
        "state": health_code(row.state),
        "overridden": row.override_by is not None,
        "cap": math.nan if row.cap is None else row.cap,
        "state_seconds": max(0.0, s.time - row.since),
    }
    return _m(FACTORY_HEALTH, (s.factory, row.entry), values, s.time)


def _change(s: FactorySnapshot, row: TransitionRow) -> Measurement:
    values = {"changes": 1, "old_state": health_code(row.old), "new_state": health_code(row.new)}
    return _m(
        FACTORY_HEALTH_CHANGES, (s.factory, row.entry, row.old, row.new, row.by), values, row.at, {"reason": row.reason}
    )


def _cloud(s: FactorySnapshot, row: CloudRow) -> Iterator[Measurement]:
    for state, count in sorted(row.states.items()):
        yield _m(FACTORY_CLOUD_INSTANCES, (s.factory, row.entry, state), {"instances": count}, s.time)
    yield _m(FACTORY_CLOUD_UNKNOWN, (s.factory, row.entry), {"unknown": row.unknown}, s.time)


def _match_values(values: Mapping[str, float]) -> dict[str, float]:
    return {f.name: values[f.name] for f in _MATCH_FIELDS}


def _row_values(row: GroupEntryRow) -> dict[str, float]:
    return {f.name: getattr(row, f.name) for f in _MATCH_FIELDS}


def _frontend(s: FrontendSnapshot) -> Iterator[Measurement]:
    yield _m(
        FRONTEND,
        (s.frontend,),
        {
            **s.totals(),
            "problems": len(s.problems),
            **{f"{phase}_seconds": s.timings.get(phase, 0.0) for phase in ("observe", "decide", "publish")},
        },
        s.time,
    )
    for group in s.groups:
        totals = s.group_totals(group)
        yield _m(
            FRONTEND_GROUP,
            (s.frontend, group),
            {
                **_match_values(totals),
                "jobs_unmatched": totals["jobs_unmatched"],
                "jobs_downtime": totals["jobs_downtime"],
            },
            s.time,
        )
    for row in s.rows:
        yield _m(
            FRONTEND_MATCH,
            (s.frontend, row.group, row.entry),
            {
                **_row_values(row),
                "limits_hit": len(row.limits_hit),
                "curbs_hit": len(row.curbs_hit),
                "in_downtime": row.in_downtime,
            },
            s.time,
        )
    for restart in s.restarts:
        yield _m(
            FRONTEND_RESTARTS,
            (s.frontend, restart.group, restart.entry),
            {name: getattr(restart, name) for name in RESTART_FIGURES},
            s.time,
        )
