"""Static HTML status pages with rrdtool graphs, readable with no web application.

For a factory: ``<dir>/<subdir>/factory-<name>/index.html`` (totals and a
table of entries) and ``entry-<entry>.html`` per entry; for a frontend:
``frontend-<name>/index.html`` (totals and groups) and ``group-<group>.html``
per group. ``<dir>/<subdir>/index.html`` links every component found there.
Any static web server (or a browser on the file) shows them; a
``<meta http-equiv="refresh">`` reloads them.

Graphs are PNGs drawn by ``rrdtool graph`` from the files the rrd writer
keeps, found with its own `rrd_file`; ``rrd_subdir`` must therefore name
the rrd writer's ``subdir`` (a writer sees only its own settings). All the
graphs of a cycle are drawn by one ``rrdtool -`` process. A graph is
redrawn only once it is older than one pixel of its period (rrdtool's own
``--lazy`` rule: a week 600 pixels wide changes every 17 minutes), and is
drawn into a hidden temporary file then renamed, so a browser never sees
half a PNG. Pages are written atomically too.

Entry, group and frontend names come from other parties' ads: the HTML is
autoescaped, file names go through `path_part`, links are URL-quoted, and
legends and titles given to rrdtool are stripped of what it would parse.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal
from urllib.parse import quote

import jinja2
from pydantic import Field, field_validator

from updraft import timefmt
from updraft.config import ConfigModel, FrozenList, IntervalSeconds, Name, NonBlankStr, PositiveCount, TimeoutSeconds
from updraft.errors import MonitoringError
from updraft.monitoring import health_history, metrics
from updraft.monitoring.files import path_part, write_atomically
from updraft.monitoring.metrics import Kind, MeasurementSpec
from updraft.monitoring.plugin import WriterPlugin
from updraft.monitoring.rrdtool import RrdTool
from updraft.monitoring.snapshot import (
    COMPLETED_COUNTERS,
    PILOT_STATES,
    CompletedRow,
    EntryStatus,
    FactorySnapshot,
    FrontendSnapshot,
    HealthRow,
    PilotRow,
    Snapshot,
    TransitionRow,
    component_of,
)
from updraft.monitoring.writers.rrd import rrd_file

Period = Literal["hour", "day", "week", "month", "year"]
PERIOD_SECONDS: Mapping[str, int] = {
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    "month": 31 * 86400,
    "year": 365 * 86400,
}


class PageSettings(ConfigModel):
    """Where the pages go, which periods the graphs show, and how rrdtool is run."""

    subdir: Name = "html"
    """One folder name under ``monitoring.dir``."""
    rrd_subdir: Name = "rrd"
    """The rrd writer's ``subdir``, where the graphs' data is read."""
    periods: FrozenList[Period] = ("day", "week")
    """Each graph is drawn once per period, ending at the cycle's time."""
    refresh_seconds: IntervalSeconds = 300
    """How often a browser reloads a page (about the cycle time)."""
    graph_width: Annotated[int, Field(ge=100, le=4000)] = 600
    graph_height: Annotated[int, Field(ge=50, le=2000)] = 160
    binary: NonBlankStr = "rrdtool"
    timeout_seconds: TimeoutSeconds = 60.0
    """For one cycle's whole rrdtool run."""
    max_graphs_per_cycle: PositiveCount = 500
    """Graphs drawn per cycle at most (about 7 ms each), missing and stalest first; the rest wait."""
    history_subdir: Name = "health-history"
    """One folder name under ``monitoring.dir`` for each factory's history of health changes
    (``factory-<name>.json``): state, so not among the pages, which are rebuilt every cycle."""
    history_per_entry: PositiveCount = 50
    """Changes of health state kept per entry (the newest); an entry's page shows them all."""
    recent_changes: PositiveCount = 30
    """Changes shown on a factory's page, newest first, over all its entries."""

    @field_validator("periods")
    @classmethod
    def _some_distinct_periods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("list at least one period")
        if len(set(value)) != len(value):
            raise ValueError(f"a period is listed twice: {list(value)}")
        return value


# --------------------------------------------------------------------------
# Graphs (pure)
# --------------------------------------------------------------------------

STATE_COLOURS: Mapping[str, str] = {
    "waiting": "#9ecae1",
    "pending": "#4292c6",
    "staging": "#8856a7",
    "running": "#31a354",
    "held": "#de2d26",
}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
PER_HOUR = 3600.0
"""Counters are stored as rates per second; pilots per hour read better."""


@dataclass(frozen=True)
class Series:
    rrd: Path
    ds: str
    legend: str
    colour: str
    style: Literal["LINE", "AREA", "STACK"] = "LINE"
    scale: float = 1.0


@dataclass(frozen=True)
class Graph:
    folder: tuple[str, ...]
    """Path parts of the PNGs' folder, relative to the component's page folder."""
    kind: str
    """File-name stem: the PNGs are ``<folder>/<kind>-<period>.png``."""
    title: str
    unit: str
    series: tuple[Series, ...]

    def png(self, period: str) -> PurePath:
        return PurePath(*self.folder, f"{self.kind}-{period}.png")


def _lines(rrd: Path, pairs: Sequence[tuple[str, str]], scale: float = 1.0) -> tuple[Series, ...]:
    return tuple(
        Series(rrd, ds, legend, PALETTE[i % len(PALETTE)], "LINE", scale) for i, (ds, legend) in enumerate(pairs)
    )


def _stacked_states(rrd: Path) -> tuple[Series, ...]:
    order = ("running", "staging", "pending", "waiting", "held")
    return tuple(Series(rrd, s, s, STATE_COLOURS[s], "AREA" if i == 0 else "STACK") for i, s in enumerate(order))


def _rate_scale(spec: MeasurementSpec, ds: str) -> float:
    """Counted things per hour; counted seconds stay per second, which reads as cores (core-seconds/s)."""
    found = spec.field(ds)
    if found.kind is not Kind.COUNTER or found.unit == "s" or found.unit.endswith("-s"):
        return 1.0
    return PER_HOUR


def pilot_graphs(rrd: Path, folder: tuple[str, ...], who: str) -> tuple[Graph, ...]:
    """Pilots by state, and the idle pilots against what was requested, of one rrd file."""
    return (
        Graph(folder, "pilots", f"Pilots by state: {who}", "pilots", _stacked_states(rrd)),
        Graph(
            folder,
            "requests",
            f"Idle pilots and requests: {who}",
            "pilots",
            _lines(rrd, (("idle", "idle"), ("requested_idle", "requested idle"))),
        ),
    )


def factory_graphs(root: Path, s: FactorySnapshot) -> tuple[Graph, ...]:
    rrd = rrd_file(root, metrics.FACTORY, (s.factory,))
    folder = ("graphs",)
    return (
        *pilot_graphs(rrd, folder, f"factory {s.factory}"),
        Graph(
            folder,
            "running",
            "Running pilots and the most allowed",
            "pilots",
            _lines(rrd, (("running", "running"), ("requested_max", "requested max"))),
        ),
        Graph(
            folder,
            "actions",
            "Pilots submitted, removed and released",
            "pilots per cycle",
            _lines(rrd, (("submitted", "submitted"), ("removed", "removed"), ("released", "released"))),
        ),
        Graph(folder, "cores", "Cores held by running pilots", "cores", _lines(rrd, (("cores_running", "cores"),))),
        Graph(
            folder,
            "health",
            "Problems, refused requests, entries in downtime",
            "count",
            _lines(
                rrd,
                (
                    ("problems", "problems"),
                    ("rejected_requests", "rejected requests"),
                    ("entries_down", "entries in downtime"),
                ),
            ),
        ),
        Graph(
            folder,
            "timings",
            "Cycle time by phase",
            "seconds",
            _stacked(
                rrd,
                (
                    ("observe_seconds", "observe"),
                    ("decide_seconds", "decide"),
                    ("act_seconds", "act"),
                    ("account_seconds", "account"),
                ),
            ),
        ),
    )


def _stacked(rrd: Path, pairs: Sequence[tuple[str, str]]) -> tuple[Series, ...]:
    return tuple(
        Series(rrd, ds, legend, PALETTE[i % len(PALETTE)], "AREA" if i == 0 else "STACK")
        for i, (ds, legend) in enumerate(pairs)
    )


def entry_graphs(root: Path, s: FactorySnapshot, entry: str) -> tuple[Graph, ...]:
    """The entry as a whole: every pilot on it, whoever asked for it."""
    rrd = rrd_file(root, metrics.FACTORY_ENTRY, (s.factory, entry))
    folder = ("graphs", "entry", path_part(entry))
    return (
        Graph(folder, "pilots", f"Pilots by state: entry {entry}", "pilots", _stacked_states(rrd)),
        Graph(
            folder,
            "health",
            f"Health state: entry {entry}",
            HEALTH_AXIS,
            (Series(rrd_file(root, metrics.FACTORY_HEALTH, (s.factory, entry)), "state", "state", "#de2d26"),),
        ),
    )


HEALTH_AXIS = " ".join(f"{code}={state}" for state, code in metrics.HEALTH_CODES.items())
"""The health graph's axis label: which number is which state."""


def entry_frontend_graphs(root: Path, s: FactorySnapshot, entry: str, frontend: str) -> tuple[Graph, ...]:
    """One frontend's pilots on the entry, its requests, and its completed pilots and failures."""
    folder = ("graphs", "entry", path_part(entry), "frontend", path_part(frontend))
    rrd = rrd_file(root, metrics.FACTORY_PILOTS, (s.factory, entry, frontend))
    return (
        *pilot_graphs(rrd, folder, f"{entry}, frontend {frontend}"),
        *completed_graphs(root, s.factory, entry, frontend, folder, _completed_row(s, entry, frontend)),
    )


def completed_graphs(
    root: Path, factory: str, entry: str, frontend: str, folder: tuple[str, ...], row: CompletedRow | None
) -> tuple[Graph, ...]:
    """Rates from the running totals of completed pilots, when the factory has any for this pair."""
    if row is None:
        return ()
    spec = metrics.FACTORY_COMPLETED
    rrd = rrd_file(root, spec, (factory, entry, frontend))

    def rates(pairs: Sequence[tuple[str, str]]) -> tuple[Series, ...]:
        return tuple(replace(series, scale=_rate_scale(spec, series.ds)) for series in _lines(rrd, pairs))

    graphs = [
        Graph(
            folder,
            "completed",
            f"Completed pilots: {entry}, {frontend}",
            "pilots per hour",
            rates(
                (
                    ("pilots", "completed"),
                    ("ok", "ok"),
                    ("failed", "failed"),
                    ("no_report", "no report"),
                    ("removed", "removed"),
                )
            ),
        ),
        Graph(
            folder,
            "usage",
            f"Cores of completed pilots: {entry}, {frontend}",
            "cores",
            rates(
                (
                    ("core_seconds", "held"),
                    ("busy_core_seconds", "busy"),
                    ("good_core_seconds", "goodput"),
                    ("waste_core_seconds", "never busy"),
                )
            ),
        ),
    ]
    steps = sorted(row.failed_by_step)
    if steps:
        graphs.append(
            Graph(
                folder,
                "failures",
                f"Failed pilots by step: {entry}, {frontend}",
                "pilots per hour",
                tuple(
                    Series(
                        rrd_file(root, metrics.FACTORY_FAILURES, (factory, entry, frontend, step)),
                        "pilots",
                        step,
                        PALETTE[i % len(PALETTE)],
                        "LINE",
                        PER_HOUR,
                    )
                    for i, step in enumerate(steps)
                ),
            )
        )
    return tuple(graphs)


def _job_lines(rrd: Path, with_unmatched: bool) -> tuple[Series, ...]:
    pairs = [("jobs_idle", "idle"), ("jobs_old_idle", "old idle"), ("jobs_running", "running")]
    pairs.append(("jobs_refused", "refused by idle pilots"))
    if with_unmatched:
        pairs += [("jobs_unmatched", "unmatched"), ("jobs_downtime", "only entries down")]
    return _lines(rrd, pairs)


def _slot_series(rrd: Path) -> tuple[Series, ...]:
    return (
        Series(rrd, "slots_running", "claimed", "#31a354", "AREA"),
        Series(rrd, "slots_idle", "unclaimed", "#9ecae1", "STACK"),
        Series(rrd, "slots_failed", "failed", "#de2d26", "LINE"),
        Series(rrd, "requested_idle", "requested idle", "#ff7f0e", "LINE"),
    )


def match_graphs(rrd: Path, folder: tuple[str, ...], who: str, with_unmatched: bool) -> tuple[Graph, ...]:
    return (
        Graph(folder, "jobs", f"Jobs: {who}", "jobs", _job_lines(rrd, with_unmatched)),
        Graph(folder, "slots", f"Pilot slots and requests: {who}", "slots", _slot_series(rrd)),
    )


def frontend_graphs(root: Path, s: FrontendSnapshot) -> tuple[Graph, ...]:
    rrd = rrd_file(root, metrics.FRONTEND, (s.frontend,))
    folder = ("graphs",)
    return (
        *match_graphs(rrd, folder, f"frontend {s.frontend}", True),
        Graph(
            folder,
            "requests",
            "Pilots requested from factories",
            "pilots",
            _lines(rrd, (("requested_idle", "idle requested"), ("requested_max", "most allowed"))),
        ),
        Graph(folder, "cores", "Cores of the pilot slots", "cores", _lines(rrd, (("slots_cores", "cores"),))),
        Graph(
            folder,
            "timings",
            "Cycle time by phase",
            "seconds",
            _stacked(
                rrd, (("observe_seconds", "observe"), ("decide_seconds", "decide"), ("publish_seconds", "publish"))
            ),
        ),
        Graph(folder, "problems", "Problems", "count", _lines(rrd, (("problems", "problems"),))),
    )


def group_graphs(root: Path, s: FrontendSnapshot, group: str) -> tuple[Graph, ...]:
    rrd = rrd_file(root, metrics.FRONTEND_GROUP, (s.frontend, group))
    folder = ("graphs", "group", path_part(group))
    return (*match_graphs(rrd, folder, f"group {group}", True), *restart_graphs(root, s, group, folder))


def restart_graphs(root: Path, s: FrontendSnapshot, group: str, folder: tuple[str, ...]) -> tuple[Graph, ...]:
    """The group's restarted jobs, one line per entry they last ran on; none while it has no restart row."""
    rows = s.restarts_of(group)
    if not rows:
        return ()
    series = tuple(
        Series(
            rrd_file(root, metrics.FRONTEND_RESTARTS, (s.frontend, group, row.entry)),
            "restarted_jobs",
            row.entry,
            PALETTE[i % len(PALETTE)],
        )
        for i, row in enumerate(rows)
    )
    return (Graph(folder, "restarts", f"Restarted jobs by entry: group {group}", "jobs", series),)


def group_entry_graphs(root: Path, s: FrontendSnapshot, group: str, entry: str) -> tuple[Graph, ...]:
    rrd = rrd_file(root, metrics.FRONTEND_MATCH, (s.frontend, group, entry))
    return match_graphs(
        rrd, ("graphs", "group", path_part(group), "entry", path_part(entry)), f"{group} on {entry}", False
    )


# --------------------------------------------------------------------------
# rrdtool graph arguments (pure)
# --------------------------------------------------------------------------

_NOT_PRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
LEGEND_LIMIT = 24


def label_text(value: str, limit: int) -> str:
    """A title or label rrdtool shows as given: no control characters, no backslash
    (``\\l``, ``\\n`` are its layout codes), at most `limit` characters."""
    cleaned = _NOT_PRINTABLE.sub("?", value).replace("\\", "/")
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def legend_text(value: str, width: int = 0) -> str:
    """A legend, padded to `width`: in a LINE or AREA argument a colon ends it, so it is escaped."""
    return label_text(value, LEGEND_LIMIT).ljust(width).replace(":", "\\:")


def def_path(path: Path) -> str:
    """A file name inside a DEF, where a colon would end it."""
    return str(path).replace(":", "\\:")


def graph_args(graph: Graph, png: Path, period_seconds: int, end: int, width: int, height: int) -> list[str]:
    """``rrdtool graph`` for one graph and period, each series with its latest and highest value."""
    args = [
        "graph",
        str(png),
        "--imgformat",
        "PNG",
        "--start",
        str(end - period_seconds),
        "--end",
        str(end),
        "--width",
        str(width),
        "--height",
        str(height),
        "--lower-limit",
        "0",
        "--slope-mode",
        "--title",
        label_text(graph.title, 100),
        "--vertical-label",
        label_text(graph.unit, 40),
    ]
    widest = max((len(label_text(s.legend, LEGEND_LIMIT)) for s in graph.series), default=0)
    for i, series in enumerate(graph.series):
        raw = f"r{i}"
        args.append(f"DEF:{raw}={def_path(series.rrd)}:{series.ds}:AVERAGE")
        value = raw
        if series.scale != 1.0:
            value = f"v{i}"
            args.append(f"CDEF:{value}={raw},{series.scale:g},*")
        legend = legend_text(series.legend, widest)
        if series.style == "LINE":
            args.append(f"LINE2:{value}{series.colour}:{legend}")
        else:
            args.append(f"AREA:{value}{series.colour}:{legend}" + (":STACK" if series.style == "STACK" else ""))
        args += [
            f"VDEF:last{i}={value},LAST",
            f"VDEF:max{i}={value},MAXIMUM",
            f"GPRINT:last{i}:now %8.1lf",
            f"GPRINT:max{i}:max %8.1lf\\l",
        ]
    return args


def graph_is_due(png_mtime: float | None, now: float, period_seconds: int, width: int) -> bool:
    """rrdtool's ``--lazy`` rule: redraw once the image is older than one pixel of its period."""
    return png_mtime is None or now - png_mtime >= period_seconds / width


def with_existing_data(graph: Graph) -> Graph | None:
    """The graph without the series whose file does not exist yet (first cycle, a new entry); None if empty."""
    present = tuple(s for s in graph.series if s.rrd.is_file())
    return replace(graph, series=present) if present else None


# --------------------------------------------------------------------------
# Pages (pure)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    file: str
    template: str
    context: Mapping[str, Any]
    graphs: tuple[Graph, ...] = ()
    sections: tuple[tuple[str, tuple[Graph, ...]], ...] = ()
    """Graphs under a heading each (an entry's frontends, a group's entries), after `graphs`."""

    @property
    def all_graphs(self) -> tuple[Graph, ...]:
        return (*self.graphs, *(g for _, graphs in self.sections for g in graphs))


def page_file(prefix: str, name: str) -> str:
    return f"{prefix}-{path_part(name)}.html"


def _frontends_of(s: FactorySnapshot, entry: str) -> list[str]:
    return sorted({r.frontend for r in s.rows_of(entry)} | {c.frontend for c in s.completed_of(entry)})


def _completed_row(s: FactorySnapshot, entry: str, frontend: str) -> CompletedRow | None:
    return next((c for c in s.completed_of(entry) if c.frontend == frontend), None)


def entry_names(s: FactorySnapshot) -> list[str]:
    """Advertised entries first, in the snapshot's order, then any only seen in pilots or reports."""
    names = [e.entry for e in s.entries]
    extra = {r.entry for r in s.pilots} | {c.entry for c in s.completed}
    return names + sorted(extra - set(names))


@dataclass(frozen=True)
class EntrySummary:
    """One row of the factory's entry table."""

    name: str
    link: str
    status: EntryStatus | None
    rows: tuple[PilotRow, ...]
    completed: tuple[CompletedRow, ...]
    requested_idle: int = 0
    requested_max: int = 0
    limits_hit: tuple[str, ...] = ()
    finished: Mapping[str, int] = field(default_factory=dict)
    health: HealthRow | None = None
    """None when the factory reported no health for the entry this cycle."""
    history: tuple[TransitionRow, ...] = ()
    """Its recorded changes of health state, newest first."""


def entry_summary(s: FactorySnapshot, entry: str, history: health_history.History | None = None) -> EntrySummary:
    status = next((e for e in s.entries if e.entry == entry), None)
    rows, completed = s.rows_of(entry), s.completed_of(entry)
    changes = (history or {}).get(entry, ())
    return EntrySummary(
        entry,
        page_file("entry", entry),
        status,
        rows,
        completed,
        requested_idle=sum(r.requested_idle for r in rows),
        requested_max=sum(r.requested_max for r in rows),
        limits_hit=tuple(sorted({name for r in rows for name in r.limits_hit})),
        finished={key: sum(getattr(c, key) for c in completed) for key in COMPLETED_COUNTERS},
        health=next((h for h in s.health if h.entry == entry), None),
        history=tuple(reversed(changes)),
    )


def factory_pages(
    root: Path, s: FactorySnapshot, history: health_history.History | None = None, recent_changes: int = 30
) -> list[Page]:
    """The factory's page and one per entry; `history` is each entry's recorded health changes."""
    entries = [entry_summary(s, name, history) for name in entry_names(s)]
    common = {"snapshot": s, "kind": "factory", "name": s.factory, "states": PILOT_STATES}
    recent = health_history.newest_first(history or {}, recent_changes)
    pages = [
        Page(
            "index.html",
            "factory.html.j2",
            {**common, "entries": entries, "totals": s.totals(), "recent_changes": recent},
            factory_graphs(root, s),
        )
    ]
    for summary in entries:
        sections = tuple(
            (f"Frontend {frontend}", entry_frontend_graphs(root, s, summary.name, frontend))
            for frontend in _frontends_of(s, summary.name)
        )
        pages.append(
            Page(
                summary.link,
                "entry.html.j2",
                {**common, "entry": summary},
                entry_graphs(root, s, summary.name),
                sections,
            )
        )
    return pages


@dataclass(frozen=True)
class GroupSummary:
    name: str
    link: str
    totals: Mapping[str, float]
    entries: int
    restarts: Mapping[str, float] | None = None
    """Restart figures summed over the group's entries; None when unknown this cycle (a schedd unread)."""


def frontend_pages(root: Path, s: FrontendSnapshot) -> list[Page]:
    groups = [
        GroupSummary(
            g,
            page_file("group", g),
            s.group_totals(g),
            len(s.rows_of(g)),
            None if g in s.restarts_unknown else s.restart_totals(g),
        )
        for g in s.groups
    ]
    common = {"snapshot": s, "kind": "frontend", "name": s.frontend}
    pages = [
        Page(
            "index.html",
            "frontend.html.j2",
            {**common, "groups": groups, "totals": s.totals()},
            frontend_graphs(root, s),
        )
    ]
    for summary in groups:
        rows = s.rows_of(summary.name)
        sections = tuple((f"Entry {row.entry}", group_entry_graphs(root, s, summary.name, row.entry)) for row in rows)
        pages.append(
            Page(
                summary.link,
                "group.html.j2",
                {**common, "group": summary, "rows": rows, "restarts": s.restarts_of(summary.name)},
                group_graphs(root, s, summary.name),
                sections,
            )
        )
    return pages


def pages_of(
    root: Path, snapshot: Snapshot, history: health_history.History | None = None, recent_changes: int = 30
) -> list[Page]:
    """Every page of the component, with the graphs each shows (whether or not their data exists yet)."""
    if isinstance(snapshot, FactorySnapshot):
        return factory_pages(root, snapshot, history, recent_changes)
    return frontend_pages(root, snapshot)


def component_folder(snapshot: Snapshot) -> str:
    kind, name = component_of(snapshot)
    return f"{kind}-{path_part(name)}"


# --------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------


def number(value: float) -> str:
    """Counts as integers; fractional job counts (a job matching n entries is 1/n on each) with one decimal."""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def utc(epoch: float) -> str:
    """A time as the pages show it; one out of range shown as a number, never an exception mid-page."""
    return timefmt.utc(epoch)


def href(relative: str | PurePath) -> str:
    """A link to one of our own files: `path_part` names keep their ``%`` literally, so it is quoted."""
    return quote(PurePath(relative).as_posix())


def templates() -> jinja2.Environment:
    """Autoescaped: names on the pages come from other parties' ads."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("updraft.monitoring", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(number=number, utc=utc, href=href)
    return env


@dataclass(frozen=True)
class ShownGraph:
    title: str
    images: tuple[tuple[str, str], ...]
    """(period, src) of each PNG that exists."""


def shown(graphs: Iterable[Graph], periods: Sequence[str], drawn: set[PurePath]) -> list[ShownGraph]:
    """The graphs with at least one image on disk, so a page never shows a broken image."""
    result = []
    for graph in graphs:
        images = tuple((p, href(graph.png(p))) for p in periods if graph.png(p) in drawn)
        if images:
            result.append(ShownGraph(graph.title, images))
    return result


def render_page(
    env: jinja2.Environment, page: Page, periods: Sequence[str], drawn: set[PurePath], refresh_seconds: int
) -> str:
    sections = [(heading, shown(graphs, periods, drawn)) for heading, graphs in page.sections]
    return env.get_template(page.template).render(
        **page.context,
        refresh_seconds=refresh_seconds,
        graphs=shown(page.graphs, periods, drawn),
        sections=sections,
        periods=periods,
    )


def render_overview(env: jinja2.Environment, folders: Sequence[str], refresh_seconds: int, now: float) -> str:
    return env.get_template("overview.html.j2").render(folders=folders, refresh_seconds=refresh_seconds, generated=now)


# --------------------------------------------------------------------------
# The writer
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Drawing:
    graph: Graph
    period: str
    target: Path
    temporary: Path


def stale_files(folder: Path, keep: set[Path]) -> list[Path]:
    """Pages and PNGs of entries or groups no longer in the snapshot (only ours: *.html, *.png)."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for pattern in ("*.html", "graphs/**/*.png")
        for p in folder.glob(pattern)
        if p.is_file() and not p.name.startswith(".") and p not in keep
    )


@dataclass
class StatusPagesWriter:
    settings: PageSettings
    directory: Path
    name: str = "status_pages"
    env: jinja2.Environment = field(default_factory=templates)

    @property
    def html_root(self) -> Path:
        return self.directory / self.settings.subdir

    @property
    def rrd_root(self) -> Path:
        return self.directory / self.settings.rrd_subdir

    def history_file(self, snapshot: Snapshot) -> Path:
        return self.directory / self.settings.history_subdir / f"{component_folder(snapshot)}.json"

    def write(self, snapshot: Snapshot) -> None:
        folder = self.html_root / component_folder(snapshot)
        problems: list[str] = []
        history = self._history(snapshot, problems) if isinstance(snapshot, FactorySnapshot) else {}
        pages = pages_of(self.rrd_root, snapshot, history, self.settings.recent_changes)
        periods = self.settings.periods
        problems += self._draw(self._due(folder, pages, time.time()), int(snapshot.time))
        wanted = {g.png(p) for page in pages for g in page.all_graphs for p in periods}
        drawn = {png for png in wanted if (folder / png).is_file()}
        for page in pages:
            self._write(folder / page.file, render_page(self.env, page, periods, drawn, self.settings.refresh_seconds))
        self._write(
            self.html_root / "index.html",
            render_overview(self.env, _components(self.html_root), self.settings.refresh_seconds, snapshot.time),
        )
        keep = {folder / png for png in wanted} | {folder / page.file for page in pages}
        for path in stale_files(folder, keep):
            try:
                path.unlink(missing_ok=True)
            except OSError as err:
                problems.append(f"cannot remove stale {path}: {err.strerror}")
        if problems:
            raise MonitoringError("status_pages: " + " | ".join(problems))

    def _history(self, snapshot: FactorySnapshot, problems: list[str]) -> health_history.History:
        """The stored history with this cycle's changes, saved when they changed it.

        A file that cannot be read as a history is moved aside (``.bad``), never overwritten
        unread, and the history starts anew; either way the pages are still written."""
        path = self.history_file(snapshot)
        writable = True
        try:
            stored = health_history.load(path)
        except MonitoringError as err:
            problems.append(f"{err}; moved aside to {path.name}.bad, the history starts anew")
            stored = {}
            try:
                path.replace(path.with_name(path.name + ".bad"))
            except OSError as move:
                problems.append(f"cannot move {path} aside ({move.strerror}): it is left as it is")
                writable = False
        history = health_history.merged(
            stored, snapshot.transitions, entry_names(snapshot), self.settings.history_per_entry
        )
        if writable and history != stored:
            try:
                health_history.save(path, history)
            except MonitoringError as err:
                problems.append(str(err))
        return history

    def _due(self, folder: Path, pages: Iterable[Page], now: float) -> list[Drawing]:
        """The graphs to draw this cycle: missing ones first, then the stalest, at most
        `max_graphs_per_cycle`, so a factory with a thousand entries refreshes its
        graphs over a few cycles instead of spending minutes in each one."""
        due: list[tuple[float, Drawing]] = []
        for page in pages:
            for graph in page.all_graphs:
                present = with_existing_data(graph)
                if present is None:
                    continue
                for period in self.settings.periods:
                    target = folder / graph.png(period)
                    drawn_at = _mtime(target)
                    if graph_is_due(drawn_at, now, PERIOD_SECONDS[period], self.settings.graph_width):
                        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                        due.append(
                            (-1.0 if drawn_at is None else drawn_at, Drawing(present, period, target, temporary))
                        )
        due.sort(key=lambda item: item[0])  # stable: the pages' own order among equals
        return [drawing for _, drawing in due[: self.settings.max_graphs_per_cycle]]

    def _draw(self, drawings: Sequence[Drawing], end: int) -> list[str]:
        """Draws every due graph in one rrdtool run; the problems, if any."""
        width, height = self.settings.graph_width, self.settings.graph_height
        commands = [graph_args(d.graph, d.temporary, PERIOD_SECONDS[d.period], end, width, height) for d in drawings]
        try:
            for folder in {d.target.parent for d in drawings}:
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            return [f"cannot make the graph folder {err.filename}: {err.strerror}"]
        try:
            replies = RrdTool(self.settings.binary, self.settings.timeout_seconds).batch(commands)
        except MonitoringError as err:
            _remove(d.temporary for d in drawings)
            return [str(err)]
        problems = []
        for d, reply in zip(drawings, replies, strict=True):
            try:
                if reply.ok:
                    d.temporary.replace(d.target)
                else:
                    d.temporary.unlink(missing_ok=True)
                    problems.append(f"graph {d.target}: {reply.error}")
            except OSError as err:
                problems.append(f"graph {d.target}: {err.strerror}")
        return problems

    def _write(self, target: Path, text: str) -> None:
        try:
            write_atomically(target, text)
        except OSError as err:
            raise MonitoringError(f"status_pages: cannot write {target}: {err}") from err


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _components(html_root: Path) -> list[str]:
    """Every component's page folder, for the overview: factories and frontends may share the directory."""
    return sorted(
        p.name
        for p in html_root.iterdir()
        if p.is_dir()
        and (p.name.startswith("factory-") or p.name.startswith("frontend-"))
        and (p / "index.html").is_file()
    )


def create(settings: PageSettings, directory: Path) -> StatusPagesWriter:
    return StatusPagesWriter(settings, directory)


def agrees(settings: PageSettings, writers: Mapping[str, Any]) -> list[str]:
    """The pages graph the rrd writer's files: both must name the same folder."""
    rrd_subdir = writers["rrd"].subdir
    if settings.rrd_subdir != rrd_subdir:
        return [f"status_pages.rrd_subdir {settings.rrd_subdir!r} must be the rrd writer's subdir {rrd_subdir!r}"]
    return []


PLUGIN = WriterPlugin("status_pages", PageSettings, create, requires=("rrd",), agrees=agrees)
