"""The RRD writer and the status pages, without rrdtool: arguments, parsing, schemas, paths, pages.

The same code against the real rrdtool is in tests/integration/test_monitoring_rrd.py.
"""

from __future__ import annotations

import math
import re
import stat
from collections.abc import Mapping
from pathlib import Path, PurePath

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from updraft.errors import MonitoringError
from updraft.monitoring import metrics, rrdtool
from updraft.monitoring.files import path_part
from updraft.monitoring.metrics import Kind, Measurement
from updraft.monitoring.rrdtool import Reply, RrdTool, Schema
from updraft.monitoring.snapshot import (
    CompletedRow,
    EntryStatus,
    FactorySnapshot,
    FrontendSnapshot,
    GroupEntryRow,
    PilotRow,
)
from updraft.monitoring.writers import rrd, status_pages
from updraft.monitoring.writers.rrd import RrdSettings, rrd_file
from updraft.monitoring.writers.status_pages import Graph, PageSettings, Series

ROOT = Path("/mon/rrd")
NOW = 1_700_000_000.0

# --------------------------------------------------------------------------
# Pipe-mode quoting
# --------------------------------------------------------------------------


def split_like_rrdtool(line: str) -> list[str]:
    """rrdtool 1.7's pipe-mode tokenizer (CreateArgs in rrd_tool.c), in Python, to check quoting against."""
    args: list[str] = []
    current: list[str] = []
    quote: str | None = None
    in_arg = False
    for char in line.strip(" \t"):
        if char == " " and not quote:
            if in_arg:
                args.append("".join(current))
                current, in_arg = [], False
        elif char in "'\"":
            if quote == char:
                quote = None
            elif quote:
                current.append(char)
            else:
                in_arg, quote = True, char
        else:
            in_arg = True
            current.append(char)
    assert quote is None, f"unterminated quote in {line!r}"
    if in_arg:
        args.append("".join(current))
    return args


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [
        ("/mon/rrd/updraft_factory/fac.rrd", "/mon/rrd/updraft_factory/fac.rrd"),
        ("/mon/rrd/x/ce1@site.rrd", "/mon/rrd/x/ce1@site.rrd"),
        ("/mon/rrd/x/%612f62.rrd", "/mon/rrd/x/%612f62.rrd"),
        ("DEF:r0=/a.rrd:idle:AVERAGE", "DEF:r0=/a.rrd:idle:AVERAGE"),
        ("/my dir/a.rrd", "'/my dir/a.rrd'"),
        ("it's", "'it'\"'\"'s'"),
        ('say "hi"', "'say \"hi\"'"),
        ("''", "\"''\""),
        ("", "''"),
        ("now %8.1lf\\l", "'now %8.1lf\\l'"),
    ],
)
def test_arguments_are_quoted_for_pipe_mode(arg: str, quoted: str) -> None:
    assert rrdtool.quote_arg(arg) == quoted
    assert split_like_rrdtool(rrdtool.pipe_line(["graph", arg])) == ["graph", arg]


@given(st.lists(st.text(st.characters(blacklist_characters="\n\r\0"), max_size=30), min_size=1, max_size=5))
def test_any_argument_without_a_line_break_survives_pipe_mode(args: list[str]) -> None:
    assert split_like_rrdtool(rrdtool.pipe_line(["info", *args])) == ["info", *args]


@pytest.mark.parametrize("arg", ["a\nb", "a\rb", "a\0b"])
def test_arguments_pipe_mode_cannot_carry_are_refused(arg: str) -> None:
    with pytest.raises(MonitoringError, match="line break or NUL"):
        rrdtool.pipe_line(["update", arg])


# --------------------------------------------------------------------------
# create / update arguments
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "rows"),
    [
        (300, [576, 672, 744, 400]),
        (60, [2880, 3360, 3720, 2000]),
        (10, [17280, 20160, 22320, 12000]),
        (3600, [48, 56, 62, 34]),
        (86400, [2, 3, 3, 2]),
    ],
)
def test_archives_keep_their_periods_whatever_the_step(step: int, rows: list[int]) -> None:
    assert [rrdtool.rows_for(a, step) for a in rrdtool.ARCHIVES] == rows


def test_create_args_make_one_data_source_per_field_and_average_and_max_archives() -> None:
    args = rrdtool.create_args(Path("/m/f.rrd"), metrics.FACTORY_FAILURES, 300, 1_699_999_700)
    assert args == [
        "create",
        "/m/f.rrd",
        "--start",
        "1699999700",
        "--step",
        "300",
        "--no-overwrite",
        "DS:pilots:DERIVE:600:0:U",
        "RRA:AVERAGE:0.5:1:576",
        "RRA:MAX:0.5:1:576",
        "RRA:AVERAGE:0.5:6:672",
        "RRA:MAX:0.5:6:672",
        "RRA:AVERAGE:0.5:24:744",
        "RRA:MAX:0.5:24:744",
        "RRA:AVERAGE:0.5:288:400",
        "RRA:MAX:0.5:288:400",
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (metrics.FACTORY_ENTRY, {"waiting": "GAUGE", "in_downtime": "GAUGE", "cores_per_pilot": "GAUGE"}),
        (metrics.FACTORY_COMPLETED, {"pilots": "DERIVE", "good_core_seconds": "DERIVE"}),
    ],
)
def test_gauges_are_gauges_and_counters_derive(spec: metrics.MeasurementSpec, expected: dict[str, str]) -> None:
    sources = dict(a.split(":")[1:3] for a in rrdtool.data_source_args(spec, 60))
    assert list(sources) == list(spec.field_names)
    assert {name: sources[name] for name in expected} == expected
    assert all(a.endswith(":120:0:U") for a in rrdtool.data_source_args(spec, 60))


@pytest.mark.parametrize(
    ("kind", "value", "text"),
    [
        (Kind.GAUGE, 3.0, "3.0"),
        (Kind.GAUGE, 1 / 3, "0.3333333333333333"),
        (Kind.GAUGE, 0.0, "0.0"),
        (Kind.GAUGE, 1e20, "1e+20"),
        (Kind.GAUGE, math.nan, "U"),
        (Kind.GAUGE, math.inf, "U"),
        (Kind.COUNTER, 12.0, "12"),
        (Kind.COUNTER, 123456789012345.0, "123456789012345"),
        (Kind.COUNTER, 2.6, "3"),
        (Kind.COUNTER, -math.inf, "U"),
    ],
)
def test_update_values(kind: Kind, value: float, text: str) -> None:
    assert rrdtool.update_value(kind, value) == text


def test_update_args_name_every_field_and_stamp_the_whole_second() -> None:
    row = Measurement(
        metrics.FACTORY_FAILURES,
        (("factory", "f"), ("entry", "e"), ("frontend", "v"), ("step", "validate")),
        {"pilots": 7.0},
        1_700_000_123.9,
    )
    assert rrdtool.update_args(Path("/m/x.rrd"), row) == [
        "update",
        "/m/x.rrd",
        "--skip-past-updates",
        "--template",
        "pilots",
        "1700000123:7",
    ]
    (entry,) = [
        m
        for m in metrics.measurements(FACTORY)
        if m.name == "updraft_factory_entry" and m.tag_values == ("fac", "ce1@site")
    ]
    args = rrdtool.update_args(Path("/m/e.rrd"), entry)
    assert args[4].split(":") == list(metrics.FACTORY_ENTRY.field_names)
    assert args[5] == "1700000000:2.0:1.0:0.0:3.0:3.0:0.0:0.0:8.0"


# --------------------------------------------------------------------------
# rrdtool info and schemas
# --------------------------------------------------------------------------

INFO = """\
filename = "/mon/rrd/updraft_factory/fac.rrd"
rrd_version = "0003"
step = 300
last_update = 1700000000
header_size = 896
ds[waiting].index = 0
ds[waiting].type = "GAUGE"
ds[waiting].minimal_heartbeat = 600
ds[pilots].index = 1
ds[pilots].type = "DERIVE"
rra[0].cf = "AVERAGE"
rra[0].rows = 576
"""


@pytest.mark.parametrize(
    ("text", "schema"),
    [
        (INFO, Schema(300, {"waiting": "GAUGE", "pilots": "DERIVE"})),
        ("step = 10\n", Schema(10, {})),
        ('filename = "step = 5"\nstep = 60\nds[a_b1].type = "COUNTER"\n', Schema(60, {"a_b1": "COUNTER"})),
    ],
)
def test_info_gives_the_step_and_data_sources(text: str, schema: Schema) -> None:
    assert rrdtool.parse_info(text) == schema


def test_info_without_a_step_is_refused() -> None:
    with pytest.raises(MonitoringError, match="no step"):
        rrdtool.parse_info('filename = "x"\n')


EXPECTED = Schema(300, {"idle": "GAUGE", "running": "GAUGE", "pilots": "DERIVE"})


@pytest.mark.parametrize(
    ("found", "differences"),
    [
        (EXPECTED, []),
        (Schema(300, {"pilots": "DERIVE", "running": "GAUGE", "idle": "GAUGE"}), []),
        (Schema(60, EXPECTED.data_sources), ["step is 60 s, the writer's is 300 s"]),
        (Schema(300, {"idle": "GAUGE", "pilots": "DERIVE"}), ["data sources missing: running"]),
        (Schema(300, {**EXPECTED.data_sources, "held": "GAUGE", "x": "GAUGE"}), ["unexpected data sources: held, x"]),
        (
            Schema(300, {**EXPECTED.data_sources, "pilots": "COUNTER"}),
            ["data sources of another type: pilots is COUNTER, expected DERIVE"],
        ),
        (
            Schema(10, {"idle": "DERIVE", "old": "GAUGE"}),
            [
                "step is 10 s, the writer's is 300 s",
                "data sources missing: running, pilots",
                "unexpected data sources: old",
                "data sources of another type: idle is DERIVE, expected GAUGE",
            ],
        ),
    ],
)
def test_schema_differences(found: Schema, differences: list[str]) -> None:
    assert rrdtool.schema_differences(EXPECTED, found) == differences


def test_expected_schema_follows_the_catalogue() -> None:
    schema = rrdtool.expected_schema(metrics.FACTORY_COMPLETED, 120)
    assert schema.step == 120 and set(schema.data_sources.values()) == {"DERIVE"}
    assert list(schema.data_sources) == list(metrics.FACTORY_COMPLETED.field_names)


# --------------------------------------------------------------------------
# Pipe-mode replies
# --------------------------------------------------------------------------

COMMANDS = [("create", "a"), ("info", "b"), ("graph", "c"), ("update", "d")]


def test_replies_are_matched_to_their_commands_with_their_output() -> None:
    stdout = (
        "OK u:0.01 s:0.00 r:0.01\n"
        'step = 300\nds[x].type = "GAUGE"\nOK u:0.01 s:0.00 r:0.01\n'
        "481x155\nOK u:0.02 s:0.00 r:0.03\n"
        "ERROR: d: illegal attempt to update using time 5 when last update time is 5\n"
    )
    replies = rrdtool.parse_replies(COMMANDS, stdout)
    assert [r.ok for r in replies] == [True, True, True, False]
    assert replies[1].output == 'step = 300\nds[x].type = "GAUGE"' and replies[2].output == "481x155"
    assert replies[3].error == "d: illegal attempt to update using time 5 when last update time is 5"
    assert replies[3].args == ("update", "d")


def test_replies_stop_where_rrdtool_stopped() -> None:
    assert len(rrdtool.parse_replies(COMMANDS, "OK u:0 s:0 r:0\nsome output\n")) == 1


def test_a_missing_rrdtool_is_named_with_its_package(tmp_path: Path) -> None:
    with pytest.raises(MonitoringError, match=r"rrdtool not found: apt-get install rrdtool"):
        RrdTool(str(tmp_path / "no-rrdtool")).batch([("info", "x.rrd")])
    with pytest.raises(MonitoringError, match=r"rrdtool not found"):
        RrdTool(str(tmp_path / "no-rrdtool")).run(["info", "x.rrd"])


def fake_rrdtool(tmp_path: Path, script: str) -> str:
    path = tmp_path / "rrdtool"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_a_slow_rrdtool_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    with pytest.raises(MonitoringError, match=r"did not finish 1 commands in 0.2 s"):
        RrdTool(fake_rrdtool(tmp_path, "exec sleep 10\n"), 0.2).batch([("info", "x.rrd")])


def test_an_rrdtool_that_dies_early_is_reported(tmp_path: Path) -> None:
    binary = fake_rrdtool(tmp_path, "echo 'OK u:0 s:0 r:0'; echo crashed >&2; exit 3\n")
    with pytest.raises(MonitoringError, match=r"stopped after 1 of 2 commands \(exit status 3\): crashed"):
        RrdTool(binary).batch([("info", "a"), ("info", "b")])


def test_an_empty_batch_runs_nothing() -> None:
    assert RrdTool("/nonexistent/rrdtool").batch([]) == []


# --------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "tags", "relative"),
    [
        (metrics.FACTORY, ("fac",), "updraft_factory/fac.rrd"),
        (metrics.FACTORY_ENTRY, ("fac", "ce1@site.org"), "updraft_factory_entry/fac/ce1@site.org.rrd"),
        (metrics.FACTORY_ENTRY, ("fac", "a/b"), f"updraft_factory_entry/fac/{path_part('a/b')}.rrd"),
        (metrics.FACTORY_ENTRY, ("fac", ".."), f"updraft_factory_entry/fac/{path_part('..')}.rrd"),
        (metrics.FACTORY_ENTRY, ("..", "."), f"updraft_factory_entry/{path_part('..')}/{path_part('.')}.rrd"),
        (metrics.FRONTEND_GROUP, ("vo", "<script>"), f"updraft_frontend_group/vo/{path_part('<script>')}.rrd"),
        (metrics.FRONTEND_GROUP, ("vo", "a b"), f"updraft_frontend_group/vo/{path_part('a b')}.rrd"),
        (metrics.FRONTEND_GROUP, ("vo", "x" * 300), f"updraft_frontend_group/vo/{path_part('x' * 300)}.rrd"),
        (metrics.FACTORY_FAILURES, ("f", "e", "v", "validate"), "updraft_factory_failures/f/e/v/validate.rrd"),
    ],
)
def test_rrd_files_keep_odd_names_inside_their_folder(spec, tags: tuple[str, ...], relative: str) -> None:
    path = rrd_file(ROOT, spec, tags)
    assert path == ROOT / relative
    assert path.resolve().is_relative_to(ROOT / spec.name) and len(path.name) < 256
    assert rrd.measurement_of(ROOT, path) is spec


def test_a_tag_value_is_never_confused_with_another() -> None:
    names = ["a", "a.rrd", "%61", "A", "a/b", "a%2fb", ".", "..", "...", "", "ce@site", "ce site"]
    paths = {rrd_file(ROOT, metrics.FACTORY_ENTRY, ("f", n)) for n in names}
    assert len(paths) == len(names)


def test_rrd_file_wants_one_value_per_tag() -> None:
    with pytest.raises(ValueError, match="tags"):
        rrd_file(ROOT, metrics.FACTORY_ENTRY, ("only-factory",))


@pytest.mark.parametrize(
    ("relative", "problem"),
    [
        ("updraft_bogus/x.rrd", "not a measurement of the catalogue"),
        ("loose.rrd", "not a measurement of the catalogue"),
        ("updraft_factory_entry/fac.rrd", "not where the rrd writer keeps updraft_factory_entry files (2 levels"),
        ("updraft_factory/a/b.rrd", "not where the rrd writer keeps updraft_factory files (1 levels: factory)"),
    ],
)
def test_files_outside_the_layout_are_named(relative: str, problem: str) -> None:
    path = ROOT / relative
    assert rrd.measurement_of(ROOT, path) is None
    assert rrd.unknown_file_problem(ROOT, path).startswith(f"{path}: {problem}")


# --------------------------------------------------------------------------
# A cycle's plan
# --------------------------------------------------------------------------

FACTORY = FactorySnapshot(
    "fac",
    NOW,
    7,
    entries=(EntryStatus("ce1@site", False, 8, waiting=2, pending=1, running=3), EntryStatus("a/b", True, 1, held=1)),
    pilots=(
        PilotRow(
            "ce1@site", "vo", waiting=2, running=3, requested_idle=5, requested_max=50, limits_hit=("entry.max_idle",)
        ),
    ),
    completed=(CompletedRow("ce1@site", "vo", pilots=10, ok=7, failed=2, failed_by_step={"validate": 2}),),
)


def test_a_cycle_creates_missing_files_updates_all_and_skips_mismatched_ones() -> None:
    rows = [(rrd_file(ROOT, m.spec, m.tag_values), m) for m in metrics.measurements(FACTORY)]
    paths = [path for path, _ in rows]
    existing, skip = {paths[0], paths[1]}, {paths[1]}
    plan = rrd.plan_cycle(rows, existing, skip, 300)
    verbs = [(c[0], Path(c[1])) for c in plan.commands]
    assert ("update", paths[0]) in verbs and ("create", paths[0]) not in verbs
    assert all(path != paths[1] for _, path in verbs)
    for path in paths[2:]:
        assert verbs.index(("create", path)) + 1 == verbs.index(("update", path))
    assert plan.created == tuple(paths[2:])
    create = next(c for c in plan.commands if c[0] == "create")
    assert create[2:4] == ("--start", str(int(NOW) - 300))


def test_failed_commands_are_named_with_their_file() -> None:
    replies = [Reply(("update", "/a.rrd"), ""), Reply(("create", "/b.rrd"), "", "creating '/b.rrd': File exists")]
    assert rrd.command_failures(replies) == ["rrdtool create /b.rrd: creating '/b.rrd': File exists"]
    assert rrd.created_files([*replies, Reply(("create", "/c.rrd"), "")]) == [Path("/c.rrd")]


def test_settings_defaults_and_strictness() -> None:
    settings = RrdSettings()
    assert (settings.step_seconds, settings.binary, settings.timeout_seconds, settings.subdir) == (
        300,
        "rrdtool",
        60.0,
        "rrd",
    )
    for bad in (
        {"step_seconds": 0},
        {"timeout_seconds": 0},
        {"subdir": "../elsewhere"},
        {"stpe_seconds": 60},
        {"step_seconds": "300"},
    ):
        with pytest.raises(ValidationError):
            RrdSettings.model_validate(bad)


def test_check_without_files_needs_no_rrdtool(tmp_path: Path) -> None:
    assert rrd.check(RrdSettings(binary="/nonexistent/rrdtool"), tmp_path) == []


def test_check_reports_a_missing_rrdtool_when_there_are_files(tmp_path: Path) -> None:
    path = tmp_path / "rrd" / "updraft_factory" / "fac.rrd"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    (problem,) = rrd.check(RrdSettings(binary="/nonexistent/rrdtool"), tmp_path)
    assert "cannot check 1 RRD files" in problem and "apt-get install rrdtool" in problem


# --------------------------------------------------------------------------
# Status pages: graphs
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "legend"),
    [
        ("running", "running"),
        ("ce1:site", "ce1\\:site"),
        ("a\\lb", "a/lb"),
        ("tab\there", "tab?here"),
        ("x" * 30, "x" * 21 + "..."),
        ("50% <script>", "50% <script>"),
    ],
)
def test_legends_hold_nothing_rrdtool_would_parse(value: str, legend: str) -> None:
    assert status_pages.legend_text(value) == legend


def test_titles_keep_colons_and_lose_layout_codes() -> None:
    assert status_pages.label_text("Pilots: ce\\n1\n", 100) == "Pilots: ce/n1?"


def test_graph_args_define_scale_draw_and_print_each_series() -> None:
    graph = Graph(
        ("graphs",),
        "k",
        "Completed: e",
        "pilots per hour",
        (
            Series(Path("/m/a:b.rrd"), "ok", "ok", "#00ff00", "AREA", 3600.0),
            Series(Path("/m/c.rrd"), "failed", "failed", "#ff0000", "STACK"),
            Series(Path("/m/c.rrd"), "idle", "idle", "#0000ff"),
        ),
    )
    args = status_pages.graph_args(graph, Path("/h/.k-day.png.1.tmp"), 86400, 1_700_000_000, 600, 160)
    assert args[:2] == ["graph", "/h/.k-day.png.1.tmp"]
    assert args[args.index("--start") + 1] == "1699913600" and args[args.index("--end") + 1] == "1700000000"
    assert args[args.index("--title") + 1] == "Completed: e"
    drawing = [a for a in args if re.match(r"(DEF|CDEF|AREA|LINE2|VDEF|GPRINT):", a)]
    assert drawing[:3] == ["DEF:r0=/m/a\\:b.rrd:ok:AVERAGE", "CDEF:v0=r0,3600,*", "AREA:v0#00ff00:ok    "]
    assert "AREA:r1#ff0000:failed:STACK" in drawing and "LINE2:r2#0000ff:idle  " in drawing
    assert "GPRINT:max2:max %8.1lf\\l" in drawing


@pytest.mark.parametrize(
    ("mtime", "now", "period", "due"),
    [
        (None, 1000.0, 86400, True),
        (1000.0, 1100.0, 86400, False),
        (1000.0, 1144.0, 86400, True),
        (1000.0, 1500.0, 7 * 86400, False),
        (1000.0, 2008.0, 7 * 86400, True),
    ],
)
def test_graphs_are_redrawn_once_a_pixel_old(mtime: float | None, now: float, period: int, due: bool) -> None:
    assert status_pages.graph_is_due(mtime, now, period, 600) is due


def test_graphs_drop_series_whose_file_is_not_there_yet(tmp_path: Path) -> None:
    (tmp_path / "a.rrd").write_bytes(b"x")
    graph = Graph(
        ("g",),
        "k",
        "t",
        "u",
        (Series(tmp_path / "a.rrd", "x", "x", "#000000"), Series(tmp_path / "b.rrd", "y", "y", "#000000")),
    )
    present = status_pages.with_existing_data(graph)
    assert present is not None and [s.ds for s in present.series] == ["x"]
    assert status_pages.with_existing_data(Graph(("g",), "k", "t", "u", graph.series[1:])) is None


def test_completed_counters_are_graphed_as_rates() -> None:
    graphs = {g.kind: g for g in status_pages.entry_frontend_graphs(ROOT, FACTORY, "ce1@site", "vo")}
    assert set(graphs) == {"pilots", "requests", "completed", "usage", "failures"}
    assert {s.scale for s in graphs["completed"].series} == {3600.0}
    assert {s.scale for s in graphs["usage"].series} == {1.0}
    (failure,) = graphs["failures"].series
    expected = rrd_file(ROOT, metrics.FACTORY_FAILURES, ("fac", "ce1@site", "vo", "validate"))
    assert (failure.rrd, failure.ds, failure.scale) == (expected, "pilots", 3600.0)
    assert graphs["pilots"].png("day") == PurePath("graphs/entry/ce1@site/frontend/vo/pilots-day.png")


def test_every_graph_reads_a_data_source_of_its_file() -> None:
    frontend = FrontendSnapshot("vo", NOW, 1, (GroupEntryRow("g", "e", 1.0, 0.0, 0.0, 0, 0, 0, 0, 0, 0, 0, "no"),))
    for snapshot in (FACTORY, frontend):
        for page in status_pages.pages_of(ROOT, snapshot):
            for graph in page.all_graphs:
                for series in graph.series:
                    spec = rrd.measurement_of(ROOT, series.rrd)
                    assert spec is not None and series.ds in spec.field_names, (graph.kind, series)


def test_graph_files_of_different_entries_and_frontends_never_collide() -> None:
    snapshot = FactorySnapshot(
        "fac",
        NOW,
        1,
        pilots=(PilotRow("x", "y-fe-z"), PilotRow("x-fe-y", "z"), PilotRow("a/b", "v"), PilotRow("a%2fb", "v")),
    )
    pngs = [g.png("day") for page in status_pages.pages_of(ROOT, snapshot) for g in page.all_graphs]
    assert len(pngs) == len(set(pngs))


# --------------------------------------------------------------------------
# Status pages: HTML
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [(3.0, "3"), (0, "0"), (2.5, "2.5"), (1 / 3, "0.3"), (12.0, "12")],
)
def test_numbers(value: float, text: str) -> None:
    assert status_pages.number(value) == text


@pytest.mark.parametrize(
    ("prefix", "name", "file"),
    [
        ("entry", "ce1@site", "entry-ce1@site.html"),
        ("entry", "a/b", f"entry-{path_part('a/b')}.html"),
        ("group", "..", f"group-{path_part('..')}.html"),
        ("group", "<script>", f"group-{path_part('<script>')}.html"),
    ],
)
def test_page_files_of_odd_names(prefix: str, name: str, file: str) -> None:
    assert status_pages.page_file(prefix, name) == file


@pytest.mark.parametrize(
    ("relative", "link"),
    [
        ("entry-ce1@site.html", "entry-ce1%40site.html"),
        ("graphs/entry/%61/pilots-day.png", "graphs/entry/%2561/pilots-day.png"),
        (PurePath("graphs", "a b", "x.png"), "graphs/a%20b/x.png"),
    ],
)
def test_links_to_our_files_are_url_quoted(relative: str | PurePath, link: str) -> None:
    assert status_pages.href(relative) == link


def test_entries_only_seen_in_pilots_or_reports_get_a_page_too() -> None:
    snapshot = FactorySnapshot(
        "fac",
        NOW,
        1,
        entries=(EntryStatus("z"), EntryStatus("a")),
        pilots=(PilotRow("gone", "vo"),),
        completed=(CompletedRow("old", "vo"),),
    )
    assert status_pages.entry_names(snapshot) == ["z", "a", "gone", "old"]


SCRIPT = "<script>alert(1)</script>"


def render_all(snapshot) -> dict[str, str]:
    env = status_pages.templates()
    pages = status_pages.pages_of(ROOT, snapshot)
    drawn = {g.png("day") for page in pages for g in page.all_graphs}
    return {page.file: status_pages.render_page(env, page, ("day", "week"), drawn, 120) for page in pages}


def test_factory_pages_escape_names_from_ads_and_link_each_entry() -> None:
    snapshot = FactorySnapshot(
        "fac",
        NOW,
        3,
        entries=(EntryStatus(SCRIPT, True, 4, waiting=1), EntryStatus("ce1")),
        pilots=(PilotRow(SCRIPT, f"vo{SCRIPT}", waiting=1, limits_hit=(f"x{SCRIPT}",)),),
        completed=(CompletedRow(SCRIPT, f"vo{SCRIPT}", pilots=3, failed=1, failed_by_step={SCRIPT: 1}),),
        problems=(f"schedd {SCRIPT}",),
    )
    pages = render_all(snapshot)
    assert set(pages) == {"index.html", status_pages.page_file("entry", SCRIPT), "entry-ce1.html"}
    for text in pages.values():
        assert "<script>" not in text
        assert '<meta http-equiv="refresh" content="120">' in text
    index = pages["index.html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index and "schedd &lt;script&gt;" in index
    assert f'href="{status_pages.href(status_pages.page_file("entry", SCRIPT))}"' in index
    assert 'href="entry-ce1.html"' in index and 'class="down"' in index
    assert 'src="graphs/pilots-day.png"' in index and "graphs/pilots-week.png" not in index


def test_frontend_pages_show_groups_and_their_entries() -> None:
    rows = (
        GroupEntryRow("main", "ce1", 2.5, 1.0, 3.0, 4, 1, 3, 0, 16, 2, 20, "none", ("group.max_idle", "entry.curb")),
        GroupEntryRow(SCRIPT, "ce2", 1.0, 0.0, 0.0, 0, 0, 0, 0, 0, 1, 5, "idle", (), True),
    )
    pages = render_all(FrontendSnapshot("vo", NOW, 2, rows, {"main": 4}, {}, (), {"observe": 0.25}))
    assert set(pages) == {"index.html", "group-main.html", status_pages.page_file("group", SCRIPT)}
    assert all("<script>" not in text for text in pages.values())
    main = pages["group-main.html"]
    assert "group.max_idle" in main and "entry.curb" in main and "2.5" in main
    assert 'src="graphs/group/main/entry/ce1/jobs-day.png"' in main


def test_page_settings() -> None:
    settings = PageSettings.model_validate({"periods": ["hour", "year"], "refresh_seconds": 60})
    assert settings.periods == ("hour", "year") and settings.rrd_subdir == "rrd" and settings.subdir == "html"
    bad: Mapping[str, object]
    for bad in (
        {"periods": []},
        {"periods": ["day", "day"]},
        {"periods": ["fortnight"]},
        {"rrd_subdir": "a/b"},
        {"refresh_seconds": 0},
    ):
        with pytest.raises(ValidationError):
            PageSettings.model_validate(bad)


def test_the_plugins_are_registered_with_their_order() -> None:
    from updraft.monitoring import registry

    assert registry.plugin("rrd").check is rrd.check
    assert registry.plugin("status_pages").requires == ("rrd",)
