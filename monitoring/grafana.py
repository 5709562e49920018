"""The Grafana dashboards, as data naming catalogue metrics, rendered to dashboard JSON.

Panels say which measurement and fields they show, which tags the
template variables filter and which tags split the series; the InfluxQL
is derived from that and from the catalogue, never written by hand. So a
metric renamed in `updraft.monitoring.metrics` fails the unit tests (the
shipped JSON differs, or a query names something the catalogue lacks)
instead of leaving an empty panel, and the integration tests run every
query shipped against a real InfluxDB loaded by the writer.

Rules the rendering follows:

* Counters (running totals) are graphed as rates, with
  ``non_negative_derivative`` so a restarted factory's reset is no dip.
* A panel that shows fewer series than the measurement has (every entry
  and frontend summed, or several frontends picked in a variable) first
  reduces each series on its own, then sums: a derivative or a mean over
  a mixture of series means nothing.
* ``fill(none)``: a factory cycles every minute or so while Grafana's
  ``$__interval`` may be seconds; empty intervals are skipped, not zeros.
* Entry health is a state-timeline of the state's code (the worst state
  of each interval: ``max``), with a value mapping and a colour per state
  from `HEALTH_COLOURS`; its changes, which are events, are a table of
  the latest points, newest first.

Run ``python -m updraft.monitoring.grafana etc/grafana/dashboards`` after
changing a panel or the catalogue.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from updraft.monitoring.metrics import (
    FACTORY,
    FACTORY_COMPLETED,
    FACTORY_ENTRY,
    FACTORY_FAILURES,
    FACTORY_HEALTH,
    FACTORY_HEALTH_CHANGES,
    FACTORY_PILOTS,
    FRONTEND,
    FRONTEND_GROUP,
    FRONTEND_MATCH,
    FRONTEND_RESTARTS,
    HEALTH_CODES,
    Kind,
    MeasurementSpec,
    spec_named,
)

DATASOURCE_UID = "updraft-influxdb"
"""The uid the provisioned datasource (etc/grafana/provisioning/datasources) carries."""
DATASOURCE_NAME = "Updraft InfluxDB"
DATASOURCE = {"type": "influxdb", "uid": "${datasource}"}
SCHEMA_VERSION = 39
TAG = "updraft"

# --------------------------------------------------------------------------
# Dashboards as data
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """Some fields of one measurement, one series per value of `by`.

    `filters` are tags matched against the template variable of the same name.
    """

    measurement: str
    fields: tuple[str, ...]
    filters: tuple[str, ...]
    by: tuple[str, ...] = ()
    aggregate: str = "mean"
    """How a gauge is reduced over an interval: mean for levels, sum for per-cycle counts, max for flags."""
    rate: str | None = None
    """Counters only: graphed as their increase per this unit (``1h``; ``1s`` turns core-seconds into cores)."""


@dataclass(frozen=True)
class Ratio:
    """The rate of one counter over another's (jobs per pilot), per value of `by`."""

    measurement: str
    numerator: str
    denominator: str
    label: str
    filters: tuple[str, ...]
    by: tuple[str, ...] = ()
    rate: str = "1h"


@dataclass(frozen=True)
class Events:
    """The latest points of an event measurement (health changes), newest first, one table row each:
    its time and the `columns` named (fields, text fields and tags; at least one field or text,
    which InfluxQL needs to select tags)."""

    measurement: str
    columns: tuple[str, ...]
    filters: tuple[str, ...]
    limit: int = 200


AnyQuery = Query | Ratio | Events

HEALTH_COLOURS: Mapping[str, str] = MappingProxyType(
    {"active": "green", "degraded": "orange", "probing": "blue", "banned": "red"}
)
"""The colour of each health state in Grafana (its palette's names)."""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[AnyQuery, ...]
    unit: str = "short"
    description: str = ""
    stack: bool = False
    width: int = 12
    kind: Literal["timeseries", "state-timeline", "table"] = "timeseries"
    """state-timeline: one band per series, coloured by health state (`HEALTH_COLOURS`); table: `Events`."""


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    """A template variable: the values of tag `name` in `measurement`, narrowed by earlier variables."""

    name: str
    label: str
    measurement: str
    filters: tuple[str, ...] = ()
    multi: bool = False


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    rows: tuple[Row, ...]

    @property
    def file_name(self) -> str:
        return f"{self.uid}.json"

    @property
    def multi(self) -> frozenset[str]:
        return frozenset(v.name for v in self.variables if v.multi)


# --------------------------------------------------------------------------
# The dashboards
# --------------------------------------------------------------------------

_F = ("factory",)
_FE = ("factory", "entry")
_FEF = ("factory", "entry", "frontend")
_STATES = ("waiting", "pending", "staging", "running", "held")
_FRONTEND_TIMINGS = ("observe_seconds", "decide_seconds", "publish_seconds")


def _completed_panels(filters: tuple[str, ...], by: tuple[str, ...]) -> tuple[Panel, ...]:
    """Rates from the reports of pilots that left the queue, the same on the factory and entry pages."""
    m = FACTORY_COMPLETED.name
    return (
        Panel(
            "Completed pilots per hour",
            (Query(m, ("ok", "failed", "no_report"), filters, by, rate="1h"),),
            description="Pilots that left the queue: ended well, named a failed step, or left no report.",
        ),
        Panel(
            "Goodput vs waste (cores)",
            (Query(m, ("good_core_seconds", "waste_core_seconds", "core_seconds"), filters, by, rate="1s"),),
            description="Cores of jobs that ended well, cores held but never busy, and all cores the "
            "completed pilots held (core-seconds per second).",
        ),
        Panel(
            "Jobs per pilot",
            (Ratio(m, "jobs_run", "pilots", "jobs per pilot", filters, by),),
            description="User jobs run per completed pilot, over each interval.",
        ),
        Panel(
            "Failures by step per hour",
            (Query(FACTORY_FAILURES.name, ("pilots",), filters, (*by, "step"), rate="1h"),),
            description="Failed pilots by the glidein step that failed.",
        ),
    )


def _health_panels(filters: tuple[str, ...], by: tuple[str, ...], who: str) -> tuple[Panel, ...]:
    """The state-timeline of entry health and the table of its changes, on the factory and entry pages."""
    return (
        Panel(
            "Entry health",
            (Query(FACTORY_HEALTH.name, ("state",), filters, by, aggregate="max"),),
            description=f"The health state of {who} over time; an interval shows its worst state. "
            "Active: pilots as requested; degraded: requests capped; probing: a few probe pilots on the way "
            "out of banned; banned: no pilots.",
            width=24,
            kind="state-timeline",
        ),
        Panel(
            "Health changes",
            (Events(FACTORY_HEALTH_CHANGES.name, ("entry", "old", "new", "by", "reason"), filters),),
            description=f"Changes of health state of {who}, newest first: by the policy or an operator's override.",
            width=24,
            kind="table",
        ),
    )


FACTORY_OVERVIEW = Dashboard(
    "updraft-factory",
    "Updraft factory",
    "Every entry of one factory together: pilots, what frontends asked for, what was done, and how "
    "completed pilots fared.",
    (Variable("factory", "Factory", FACTORY.name),),
    (
        Row(
            "Pilots",
            (
                Panel("Pilots by state", (Query(FACTORY.name, _STATES, _F),), stack=True),
                Panel(
                    "Requested vs idle",
                    (Query(FACTORY.name, ("requested_idle", "idle", "requested_max", "running"), _F),),
                    description="Idle pilots the frontends ask for and have; the most they allow and the running.",
                ),
                Panel(
                    "Submissions and removals per interval",
                    (Query(FACTORY.name, ("submitted", "removed", "released"), _F, aggregate="sum"),),
                ),
                Panel("Cores running", (Query(FACTORY.name, ("cores_running",), _F),)),
                Panel(
                    "Running pilots per entry", (Query(FACTORY_ENTRY.name, ("running",), _F, ("entry",)),), stack=True
                ),
                Panel("Entries in downtime", (Query(FACTORY.name, ("entries_down",), _F, aggregate="max"),)),
            ),
        ),
        Row(
            "Cycle",
            (
                Panel(
                    "Cycle timings",
                    (Query(FACTORY.name, ("observe_seconds", "decide_seconds", "act_seconds", "account_seconds"), _F),),
                    unit="s",
                    stack=True,
                ),
                Panel(
                    "Refused requests and problems per interval",
                    (Query(FACTORY.name, ("rejected_requests", "problems"), _F, aggregate="sum"),),
                ),
            ),
        ),
        Row("Health", _health_panels(_F, ("entry",), "every entry")),
        Row("Completed pilots", _completed_panels(_F, ())),
    ),
)

ENTRY_DETAIL = Dashboard(
    "updraft-entry",
    "Updraft entry",
    "One entry of one factory, split by the frontends using it.",
    (
        Variable("factory", "Factory", FACTORY.name),
        Variable("entry", "Entry", FACTORY_ENTRY.name, ("factory",)),
        Variable("frontend", "Frontend", FACTORY_PILOTS.name, ("factory", "entry"), multi=True),
    ),
    (
        Row(
            "The entry",
            (
                Panel(
                    "Pilots on the entry by state",
                    (Query(FACTORY_ENTRY.name, _STATES, _FE),),
                    stack=True,
                    description="Every pilot on the entry, whichever frontend asked for it.",
                ),
                Panel("In downtime", (Query(FACTORY_ENTRY.name, ("in_downtime",), _FE, aggregate="max"),)),
            ),
        ),
        Row("Health", _health_panels(_FE, (), "the entry")),
        Row(
            "Per frontend",
            (
                Panel(
                    "Running pilots per frontend",
                    (Query(FACTORY_PILOTS.name, ("running",), _FEF, ("frontend",)),),
                    stack=True,
                ),
                Panel(
                    "Idle vs requested idle per frontend",
                    (Query(FACTORY_PILOTS.name, ("idle", "requested_idle"), _FEF, ("frontend",)),),
                ),
                Panel(
                    "Submissions and removals per frontend per interval",
                    (
                        Query(
                            FACTORY_PILOTS.name,
                            ("submitted", "removed", "released"),
                            _FEF,
                            ("frontend",),
                            aggregate="sum",
                        ),
                    ),
                ),
                Panel(
                    "Cores running per frontend",
                    (Query(FACTORY_PILOTS.name, ("cores_running",), _FEF, ("frontend",)),),
                    stack=True,
                ),
                Panel(
                    "Factory limits hit per frontend",
                    (Query(FACTORY_PILOTS.name, ("limits_hit",), _FEF, ("frontend",), aggregate="max"),),
                    description="Factory limits that lowered this entry's submissions or removals.",
                ),
            ),
        ),
        Row("Completed pilots", _completed_panels(_FEF, ("frontend",))),
    ),
)

_FG = ("frontend", "group")

FRONTEND_GROUP_DASHBOARD = Dashboard(
    "updraft-frontend-group",
    "Updraft frontend group",
    "One group of one frontend: the jobs it sees, the pilot slots it has, and what it asks each entry for.",
    (Variable("frontend", "Frontend", FRONTEND.name), Variable("group", "Group", FRONTEND_GROUP.name, ("frontend",))),
    (
        Row(
            "Demand and supply",
            (
                Panel(
                    "Jobs",
                    (
                        Query(
                            FRONTEND_GROUP.name,
                            (
                                "jobs_idle",
                                "jobs_old_idle",
                                "jobs_running",
                                "jobs_refused",
                                "jobs_unmatched",
                                "jobs_downtime",
                            ),
                            _FG,
                        ),
                    ),
                    description="Idle jobs matched to some entry (old: idle too long), running, not counted on "
                    "entries whose idle pilots keep refusing them (summed over entries), matched by no entry, "
                    "and waiting for entries in downtime.",
                ),
                Panel(
                    "Pilot slots",
                    (Query(FRONTEND_GROUP.name, ("slots_total", "slots_idle", "slots_running", "slots_failed"), _FG),),
                ),
                Panel("Cores of the pilot slots", (Query(FRONTEND_GROUP.name, ("slots_cores",), _FG),)),
                Panel(
                    "Idle jobs per entry",
                    (Query(FRONTEND_MATCH.name, ("jobs_idle",), _FG, ("entry",)),),
                    stack=True,
                    description="A job matching n entries counts 1/n on each.",
                ),
            ),
        ),
        Row(
            "Requests",
            (
                Panel(
                    "Idle pilots requested per entry",
                    (Query(FRONTEND_MATCH.name, ("requested_idle",), _FG, ("entry",)),),
                    stack=True,
                ),
                Panel(
                    "Most pilots allowed per entry", (Query(FRONTEND_MATCH.name, ("requested_max",), _FG, ("entry",)),)
                ),
                Panel(
                    "Limits and curbs hit per entry",
                    (Query(FRONTEND_MATCH.name, ("limits_hit", "curbs_hit"), _FG, ("entry",), aggregate="max"),),
                    description="Limits that lowered a request, and curbs (near a maximum) that halved one.",
                ),
                Panel(
                    "Entries in downtime",
                    (Query(FRONTEND_MATCH.name, ("in_downtime",), _FG, ("entry",), aggregate="max"),),
                ),
            ),
        ),
        Row(
            "Restarted jobs",
            (
                Panel(
                    "Restarted jobs per entry",
                    (Query(FRONTEND_RESTARTS.name, ("restarted_jobs",), _FG, ("entry",)),),
                    stack=True,
                    description="Queued jobs that started more than once, by the entry they last ran on "
                    '("unknown": the schedd does not record it). Jobs that left the queue are not counted.',
                ),
                Panel(
                    "Jobs restarted in the last hour per entry",
                    (Query(FRONTEND_RESTARTS.name, ("restarts_last_hour",), _FG, ("entry",)),),
                    stack=True,
                    description="Restarted jobs whose latest start was in the hour before the cycle.",
                ),
                Panel(
                    "Restarts per entry",
                    (Query(FRONTEND_RESTARTS.name, ("restarts",), _FG, ("entry",)),),
                    stack=True,
                    description="Starts beyond each queued job's first (NumJobStarts - 1), summed.",
                ),
                Panel(
                    "Badput of restarted jobs per entry",
                    (Query(FRONTEND_RESTARTS.name, ("badput_core_seconds",), _FG, ("entry",)),),
                    unit="s",
                    stack=True,
                    description="Core-seconds of finished runs that did not count (RemoteWallClockTime - "
                    "CommittedTime, times RequestCpus) of the jobs still queued.",
                ),
            ),
        ),
        Row(
            "The frontend's cycle",
            (
                Panel("Cycle timings", (Query(FRONTEND.name, _FRONTEND_TIMINGS, ("frontend",)),), unit="s", stack=True),
                Panel(
                    "Problems per interval",
                    (Query(FRONTEND.name, ("problems",), ("frontend",), aggregate="sum"),),
                    description="Unreachable schedds or collectors, per interval.",
                ),
            ),
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (FACTORY_OVERVIEW, ENTRY_DETAIL, FRONTEND_GROUP_DASHBOARD)


# --------------------------------------------------------------------------
# InfluxQL
# --------------------------------------------------------------------------


def quoted(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'


def _where(filters: Iterable[str]) -> str:
    """Each filter against its variable; a regex, because a multi-value variable renders as (a|b)."""
    return " AND ".join([*(f"{quoted(tag)} =~ /^${tag}$/" for tag in filters), "$timeFilter"])


def _group_by(tags: Iterable[str]) -> str:
    return ", ".join(["time($__interval)", *map(quoted, tags)])


def pins_each_series(spec: MeasurementSpec, filters: Sequence[str], by: Sequence[str], multi: frozenset[str]) -> bool:
    """True when every series of the query is one series of the measurement: each tag is either
    split on or filtered to one value. Otherwise values of several series fall into one bucket."""
    single = {tag for tag in filters if tag not in multi}
    return set(spec.tags) <= single | set(by)


def _reduce(field: str, query: Query) -> str:
    if query.rate is not None:
        return f"non_negative_derivative(last({quoted(field)}), {query.rate})"
    return f"{query.aggregate}({quoted(field)})"


def _summed(inner: str, columns: Iterable[str], expression: str | None, by: Sequence[str]) -> str:
    """Sum per-series results across the series `by` does not split."""
    select = expression or ", ".join(f"sum({quoted(c)}) AS {quoted(c)}" for c in columns)
    return f"SELECT {select} FROM ({inner}) WHERE $timeFilter GROUP BY {_group_by(by)} fill(none)"


def render_query(query: AnyQuery, multi: frozenset[str] = frozenset()) -> str:
    """The InfluxQL for one query, with Grafana's ``$timeFilter``, ``$__interval`` and ``$variable``s."""
    spec = spec_named(query.measurement)
    if isinstance(query, Ratio):
        return _render_ratio(query, spec)
    if isinstance(query, Events):
        columns = ", ".join(map(quoted, query.columns))
        return (
            f"SELECT {columns} FROM {quoted(spec.name)} WHERE {_where(query.filters)} "
            f"ORDER BY time DESC LIMIT {query.limit}"
        )
    select = ", ".join(f"{_reduce(f, query)} AS {quoted(f)}" for f in query.fields)
    source = f"FROM {quoted(spec.name)} WHERE {_where(query.filters)}"
    if pins_each_series(spec, query.filters, query.by, multi):
        return f"SELECT {select} {source} GROUP BY {_group_by(query.by)} fill(none)"
    inner = f"SELECT {select} {source} GROUP BY {_group_by(spec.tags)} fill(none)"
    return _summed(inner, query.fields, None, query.by)


def _render_ratio(ratio: Ratio, spec: MeasurementSpec) -> str:
    parts = (ratio.numerator, ratio.denominator)
    select = ", ".join(f"non_negative_derivative(last({quoted(f)}), {ratio.rate}) AS {quoted(f)}" for f in parts)
    inner = (
        f"SELECT {select} FROM {quoted(spec.name)} WHERE {_where(ratio.filters)} "
        f"GROUP BY {_group_by(spec.tags)} fill(none)"
    )
    expression = f"sum({quoted(ratio.numerator)}) / sum({quoted(ratio.denominator)}) AS {quoted(ratio.label)}"
    return _summed(inner, (), expression, ratio.by)


def render_variable_query(variable: Variable) -> str:
    where = " AND ".join(f"{quoted(tag)} =~ /^${tag}$/" for tag in variable.filters)
    text = f"SHOW TAG VALUES FROM {quoted(variable.measurement)} WITH KEY = {quoted(variable.name)}"
    return f"{text} WHERE {where}" if where else text


def legend(query: AnyQuery) -> str:
    """Grafana's alias: the split tags' values, then the column when there are several."""
    if isinstance(query, Events):
        return ""
    tags = " ".join(f"$tag_{tag}" for tag in query.by)
    several = isinstance(query, Query) and len(query.fields) > 1
    if not tags:
        return "$col"
    return f"{tags}: $col" if several else tags


# --------------------------------------------------------------------------
# Dashboard JSON
# --------------------------------------------------------------------------

_PANEL_HEIGHT = 8
_GRID_WIDTH = 24


def _target(ref: str, query: AnyQuery, multi: frozenset[str]) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": DATASOURCE,
        "query": render_query(query, multi),
        "rawQuery": True,
        "resultFormat": "table" if isinstance(query, Events) else "time_series",
        "alias": legend(query),
    }


def health_mappings() -> list[dict[str, Any]]:
    """Grafana value mappings: each state's code shown as its name, in its colour."""
    options = {
        str(code): {"text": state, "color": HEALTH_COLOURS[state], "index": index}
        for index, (state, code) in enumerate(sorted(HEALTH_CODES.items(), key=lambda item: item[1]))
    }
    return [{"type": "value", "options": options}]


def _state_timeline_json(panel: Panel, common: dict[str, Any]) -> dict[str, Any]:
    """Bands per entry, coloured by state; thresholds give the same colours, for a value no mapping names."""
    steps: list[dict[str, Any]] = [{"color": HEALTH_COLOURS["active"], "value": None}]
    steps += [
        {"color": HEALTH_COLOURS[state], "value": code}
        for state, code in sorted(HEALTH_CODES.items(), key=lambda item: item[1])
        if code > 0
    ]
    defaults = {
        "unit": "none",
        "color": {"mode": "thresholds"},
        "mappings": health_mappings(),
        "thresholds": {"mode": "absolute", "steps": steps},
        "custom": {"fillOpacity": 80, "lineWidth": 0, "spanNulls": True},
    }
    return {
        **common,
        "type": "state-timeline",
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "mergeValues": True,
            "showValue": "auto",
            "alignValue": "left",
            "rowHeight": 0.9,
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "single", "sort": "none"},
        },
    }


def _table_json(panel: Panel, common: dict[str, Any]) -> dict[str, Any]:
    """Rows as the query returns them (newest first); the state columns coloured like the timeline."""
    colours = {
        "type": "value",
        "options": {state: {"color": colour, "index": i} for i, (state, colour) in enumerate(HEALTH_COLOURS.items())},
    }
    overrides = [
        {
            "matcher": {"id": "byName", "options": column},
            "properties": [
                {"id": "mappings", "value": [colours]},
                {"id": "custom.cellOptions", "value": {"type": "color-text"}},
            ],
        }
        for column in ("old", "new")
    ]
    return {
        **common,
        "type": "table",
        "fieldConfig": {"defaults": {"custom": {"align": "auto"}}, "overrides": overrides},
        "options": {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
    }


def _panel_json(panel: Panel, panel_id: int, x: int, y: int, multi: frozenset[str]) -> dict[str, Any]:
    common = {
        "id": panel_id,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": _PANEL_HEIGHT, "w": panel.width, "x": x, "y": y},
        "targets": [_target(chr(ord("A") + i), q, multi) for i, q in enumerate(panel.queries)],
    }
    if panel.kind == "state-timeline":
        return _state_timeline_json(panel, common)
    if panel.kind == "table":
        return _table_json(panel, common)
    custom = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 15 if panel.stack else 0,
        "spanNulls": True,
        "showPoints": "auto",
        "stacking": {"group": "A", "mode": "normal" if panel.stack else "none"},
    }
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": _PANEL_HEIGHT, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit, "min": 0, "custom": custom}, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
        "targets": [_target(chr(ord("A") + i), q, multi) for i, q in enumerate(panel.queries)],
    }


def _panels_json(dashboard: Dashboard) -> list[dict[str, Any]]:
    """Rows one under the other; panels fill each row left to right."""
    panels: list[dict[str, Any]] = []
    y = 0
    for row in dashboard.rows:
        panels.append(
            {
                "id": len(panels) + 1,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": _GRID_WIDTH, "x": 0, "y": y},
            }
        )
        y += 1
        x = 0
        for panel in row.panels:
            if x + panel.width > _GRID_WIDTH:
                x, y = 0, y + _PANEL_HEIGHT
            panels.append(_panel_json(panel, len(panels) + 1, x, y, dashboard.multi))
            x += panel.width
        y += _PANEL_HEIGHT
    return panels


def _datasource_variable() -> dict[str, Any]:
    return {
        "type": "datasource",
        "name": "datasource",
        "label": "Data source",
        "query": "influxdb",
        "current": {"selected": False, "text": DATASOURCE_NAME, "value": DATASOURCE_UID},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def _variable_json(variable: Variable) -> dict[str, Any]:
    query = render_variable_query(variable)
    return {
        "type": "query",
        "name": variable.name,
        "label": variable.label,
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "refresh": 1,
        "sort": 1,
        "hide": 0,
        "regex": "",
        "multi": variable.multi,
        "includeAll": variable.multi,
        "current": {},
        "options": [],
    }


def dashboard_json(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana imports it (``id`` null, so provisioning and import assign one)."""
    return {
        "id": None,
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": [TAG],
        "timezone": "browser",
        "editable": True,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "graphTooltip": 1,
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": [TAG],
                "asDropdown": True,
                "title": "Updraft",
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "templating": {"list": [_datasource_variable(), *map(_variable_json, dashboard.variables)]},
        "panels": _panels_json(dashboard),
    }


def rendered() -> dict[str, str]:
    """File name -> the text shipped in etc/grafana/dashboards."""
    return {d.file_name: json.dumps(dashboard_json(d), indent=2, sort_keys=True) + "\n" for d in DASHBOARDS}


# --------------------------------------------------------------------------
# Checks the unit tests run
# --------------------------------------------------------------------------


def problems(dashboard: Dashboard) -> list[str]:
    """What would make a panel empty or wrong: names the catalogue lacks, counters not graphed as
    rates, gauges graphed as rates, filters with no variable behind them."""
    found: list[str] = []
    variables = {v.name for v in dashboard.variables}
    for variable in dashboard.variables:
        spec = _spec(variable.measurement, found)
        if spec is not None and not {variable.name, *variable.filters} <= set(spec.tags):
            found.append(f"variable {variable.name}: {spec.name} has no such tag")
    for row in dashboard.rows:
        for panel in row.panels:
            found.extend(f"{dashboard.uid} / {panel.title}: {p}" for p in _panel_kind_problems(panel))
            for query in panel.queries:
                found.extend(f"{dashboard.uid} / {panel.title}: {p}" for p in _query_problems(query, variables))
    return found


def _spec(name: str, found: list[str]) -> MeasurementSpec | None:
    try:
        return spec_named(name)
    except KeyError:
        found.append(f"no measurement {name} in the catalogue")
        return None


def _events_problems(query: Events, spec: MeasurementSpec) -> list[str]:
    found: list[str] = []
    values = {*spec.field_names, *(text.name for text in spec.texts)}
    for name in query.columns:
        if name not in values and name not in spec.tags:
            found.append(f"{spec.name} has no field, text or tag {name}")
    found += [f"{spec.name} has no tag {tag}" for tag in query.filters if tag not in spec.tags]
    if not values & set(query.columns):
        found.append(f"{spec.name}: select a field or text too (InfluxQL selects no tags alone)")
    if not spec.event:
        found.append(f"{spec.name} is not an event measurement: graph it, a table of its points means nothing")
    return found


def _panel_kind_problems(panel: Panel) -> list[str]:
    """A table shows events and only events; a state-timeline shows health codes."""
    events = [isinstance(q, Events) for q in panel.queries]
    if (panel.kind == "table") != all(events) or (panel.kind != "table" and any(events)):
        return ["a table panel shows Events queries, and Events queries go in a table panel"]
    if panel.kind == "state-timeline" and any(
        not isinstance(q, Query) or q.measurement != FACTORY_HEALTH.name or q.fields != ("state",)
        for q in panel.queries
    ):
        return [f"a state-timeline shows {FACTORY_HEALTH.name}.state (its value mappings are the health states)"]
    return []


def _query_problems(query: AnyQuery, variables: set[str]) -> list[str]:
    found: list[str] = []
    spec = _spec(query.measurement, found)
    if spec is None:
        return found
    if isinstance(query, Events):
        found += _events_problems(query, spec)
        return found + [f"filter {tag} has no template variable" for tag in query.filters if tag not in variables]
    fields = query.fields if isinstance(query, Query) else (query.numerator, query.denominator)
    rate = query.rate
    for name in fields:
        if name not in spec.field_names:
            found.append(f"{spec.name} has no field {name}")
        elif (spec.field(name).kind is Kind.COUNTER) != (rate is not None):
            found.append(
                f"{spec.name}.{name} is a {spec.field(name).kind.value}: "
                f"{'graph it as a rate' if rate is None else 'a rate of a gauge means nothing'}"
            )
    for tag in (*query.filters, *query.by):
        if tag not in spec.tags:
            found.append(f"{spec.name} has no tag {tag}")
    for tag in query.filters:
        if tag not in variables:
            found.append(f"filter {tag} has no template variable")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Write the dashboards into the folder given (etc/grafana/dashboards)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m updraft.monitoring.grafana DASHBOARD_DIR", file=sys.stderr)
        return 2
    folder = Path(args[0])
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in rendered().items():
        (folder / name).write_text(text)
        print(folder / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
