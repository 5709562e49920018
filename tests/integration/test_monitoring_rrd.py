"""The RRD writer and the status pages against the real rrdtool (no HTCondor lab).

Snapshots at increasing times with a 10 s step are written, then read back
with ``rrdtool fetch``: gauges must hold what the snapshots said, counters
the rate of their running totals. Files of another schema must be left
byte for byte, and the pages must only show images that exist.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from updraft.errors import MonitoringError
from updraft.monitoring import metrics
from updraft.monitoring.files import path_part
from updraft.monitoring.rrdtool import RrdTool
from updraft.monitoring.snapshot import (
    CompletedRow,
    EntryStatus,
    FactorySnapshot,
    FrontendSnapshot,
    GroupEntryRow,
    HealthRow,
    PilotRow,
    TransitionRow,
)
from updraft.monitoring.writers import rrd, status_pages
from updraft.monitoring.writers.rrd import RrdSettings, RrdWriter, rrd_file
from updraft.monitoring.writers.status_pages import PageSettings

pytestmark = pytest.mark.backends

STEP = 10
T0 = 1_700_000_000  # a multiple of STEP, so each update closes exactly one primary data point
SCRIPT = "<script>alert(1)</script>"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def rrdtool_installed() -> None:
    if shutil.which("rrdtool") is None:
        pytest.fail("rrdtool not found: run scripts/system-deps (apt-get install rrdtool)")


@pytest.fixture
def monitoring_dir(tmp_path: Path) -> Path:
    """A folder whose name needs pipe-mode quoting: a space, a quote, '%' and '@'."""
    path = tmp_path / "mon it's 100% @site"
    path.mkdir()
    return path


def writer(directory: Path) -> RrdWriter:
    return rrd.create(RrdSettings(step_seconds=STEP), directory)


# --------------------------------------------------------------------------
# Realistic snapshots
# --------------------------------------------------------------------------

ENTRIES = ("ce1@site1", "ce2@site2", "a/b", SCRIPT)
FRONTENDS = ("vo1", "vo2")


def factory_snapshot(k: int, time: float | None = None) -> FactorySnapshot:
    """Cycle k: levels that change with k, and completed-pilot totals that grow 30 pilots per cycle."""
    entries = tuple(
        EntryStatus(
            e,
            in_downtime=(e == "a/b"),
            cores_per_pilot=8,
            waiting=k + i,
            pending=2,
            staging=i % 2,
            running=10 * k + i,
            held=i,
        )
        for i, e in enumerate(ENTRIES)
    )
    pilots = tuple(
        PilotRow(
            e,
            fe,
            waiting=k + i,
            pending=1,
            running=5 * k + j,
            requested_idle=4 + j,
            requested_max=100,
            submitted=k % 3,
            removed=j,
            limits_hit=("entry.max_idle",) * j,
        )
        for i, e in enumerate(ENTRIES)
        for j, fe in enumerate(FRONTENDS)
    )
    completed = tuple(
        CompletedRow(
            e,
            fe,
            pilots=30 * k,
            ok=20 * k,
            failed=10 * k,
            core_seconds=3600 * 8 * k,
            busy_core_seconds=3600 * 6 * k,
            goodput_core_seconds=3600 * 5 * k,
            failed_by_step={"validate": 6 * k, "fetch": 4 * k},
        )
        for e in ENTRIES[:2]
        for fe in FRONTENDS
    )
    return FactorySnapshot(
        "fac",
        T0 + STEP * k if time is None else time,
        k,
        entries,
        pilots,
        completed,
        rejected_requests=k % 2,
        problems=("schedd slow",) * (k % 2),
        timings={"observe": 0.5, "decide": 0.1, "act": 0.2, "account": 0.05},
        health=tuple(health_row(e, k) for e in ENTRIES),
        transitions=tuple(
            TransitionRow(
                e, health_row(e, k - 1).state, health_row(e, k).state, "r", T0 + STEP * k, "policy", f"{e}{k}"
            )
            for e in ENTRIES
            if k and health_row(e, k - 1).state != health_row(e, k).state
        ),
    )


CYCLING = ("active", "degraded", "banned", "probing")


def health_row(entry: str, k: int) -> HealthRow:
    """ce2@site2 goes through every state, one per cycle (capped while degraded); the others stay active."""
    state = CYCLING[k % 4] if entry == "ce2@site2" else "active"
    return HealthRow(entry, state, "", T0 + STEP * k, cap=3 if state == "degraded" else None)


def frontend_snapshot(k: int, time: float | None = None) -> FrontendSnapshot:
    rows = tuple(
        GroupEntryRow(
            g,
            e,
            jobs_idle=10.0 / 3 + k,
            jobs_old_idle=1.0,
            jobs_running=2.0 * k,
            slots_total=4 + k,
            slots_idle=1,
            slots_running=3 + k,
            slots_failed=k % 2,
            slots_cores=8 * (4 + k),
            requested_idle=2,
            requested_max=50,
            remove="none",
            bound_by=("group.max_idle", "entry.curb"),
            in_downtime=(e == "a/b"),
        )
        for g in ("main", SCRIPT)
        for e in ENTRIES[:3]
    )
    return FrontendSnapshot(
        "vo1",
        T0 + STEP * k if time is None else time,
        k,
        rows,
        {"main": k, "lost": 2},
        {"main": 1},
        (),
        {"observe": 0.2, "decide": 0.1},
    )


# --------------------------------------------------------------------------
# Reading back
# --------------------------------------------------------------------------


def fetch(path: Path, start: int, end: int, cf: str = "AVERAGE") -> dict[int, dict[str, float]]:
    """{time: {ds: value}} from ``rrdtool fetch`` at the finest resolution."""
    text = RrdTool().run(["fetch", str(path), cf, "--start", str(start), "--end", str(end), "-r", str(STEP)])
    lines = [line for line in text.splitlines() if line.strip()]
    names = lines[0].split()
    rows = {}
    for line in lines[1:]:
        stamp, values = line.split(":", 1)
        rows[int(stamp)] = dict(zip(names, (float(v) for v in values.split()), strict=True))
    return rows


def last_update(path: Path) -> int:
    return int(RrdTool().run(["last", str(path)]).strip())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def measurement(snapshot, name: str, *tags: str) -> metrics.Measurement:
    (found,) = [m for m in metrics.measurements(snapshot) if m.name == name and m.tag_values == tags]
    return found


# --------------------------------------------------------------------------
# The RRD writer
# --------------------------------------------------------------------------


def test_gauges_hold_what_each_snapshot_said(monitoring_dir: Path) -> None:
    w = writer(monitoring_dir)
    snapshots = [factory_snapshot(k) for k in range(6)]
    for snapshot in snapshots:
        w.write(snapshot)
    checks = [
        ("updraft_factory", ("fac",)),
        ("updraft_factory_entry", ("fac", "a/b")),
        ("updraft_factory_entry", ("fac", SCRIPT)),
        ("updraft_factory_pilots", ("fac", "ce2@site2", "vo2")),
    ]
    for name, tags in checks:
        path = rrd_file(w.root, metrics.spec_named(name), tags)
        assert path.is_file() and path.resolve().is_relative_to(w.root.resolve())
        stored = fetch(path, T0 - STEP, T0 + 5 * STEP)
        for snapshot in snapshots:
            expected = measurement(snapshot, name, *tags).values
            assert stored[int(snapshot.time)] == pytest.approx(dict(expected)), (name, tags, snapshot.cycle)
    frontend = writer(monitoring_dir)
    fe_snapshots = [frontend_snapshot(k) for k in range(4)]
    for fe_snapshot in fe_snapshots:
        frontend.write(fe_snapshot)
    path = rrd_file(frontend.root, metrics.FRONTEND_MATCH, ("vo1", SCRIPT, "a/b"))
    stored = fetch(path, T0 - STEP, T0 + 3 * STEP)
    for fe_snapshot in fe_snapshots:
        assert stored[int(fe_snapshot.time)]["jobs_idle"] == pytest.approx(10.0 / 3 + fe_snapshot.cycle)
        assert stored[int(fe_snapshot.time)]["in_downtime"] == 1.0


def test_health_states_are_stored_as_codes_in_their_own_files_and_changes_are_not(monitoring_dir: Path) -> None:
    w = writer(monitoring_dir)
    for k in range(6):
        w.write(factory_snapshot(k))
    stored = fetch(rrd_file(w.root, metrics.FACTORY_HEALTH, ("fac", "ce2@site2")), T0 - STEP, T0 + 5 * STEP)
    assert [stored[T0 + STEP * k]["state"] for k in range(6)] == [0.0, 1.0, 3.0, 2.0, 0.0, 1.0]
    caps = [stored[T0 + STEP * k]["cap"] for k in range(6)]
    assert caps[1] == caps[5] == 3.0 and all(math.isnan(caps[k]) for k in (0, 2, 3, 4))
    assert not (w.root / metrics.FACTORY_HEALTH_CHANGES.name).exists()


def test_counters_are_stored_as_rates_and_a_reset_is_no_spike(monitoring_dir: Path) -> None:
    w = writer(monitoring_dir)
    for k in range(5):
        w.write(factory_snapshot(k))
    w.write(factory_snapshot(0, time=T0 + 5 * STEP))  # the factory lost its totals: a reset
    completed = rrd_file(w.root, metrics.FACTORY_COMPLETED, ("fac", "ce1@site1", "vo1"))
    stored = fetch(completed, T0 - STEP, T0 + 5 * STEP)
    assert math.isnan(stored[T0]["pilots"])  # no earlier total to differ from
    for k in range(1, 5):
        row = stored[T0 + k * STEP]
        assert row["pilots"] == pytest.approx(3.0) and row["failed"] == pytest.approx(1.0)
        assert row["core_seconds"] == pytest.approx(8 * 3600 / STEP)
    assert math.isnan(stored[T0 + 5 * STEP]["pilots"])
    failures = rrd_file(w.root, metrics.FACTORY_FAILURES, ("fac", "ce2@site2", "vo2", "validate"))
    assert fetch(failures, T0, T0 + 4 * STEP)[T0 + 2 * STEP]["pilots"] == pytest.approx(0.6)


def test_two_snapshots_in_one_second_do_not_fail_the_writer(monitoring_dir: Path) -> None:
    w = writer(monitoring_dir)
    w.write(factory_snapshot(1))
    w.write(factory_snapshot(2, time=T0 + STEP + 0.5))  # same whole second: skipped, not an error
    writer(monitoring_dir).write(factory_snapshot(3, time=T0 + STEP))  # a new writer, first cycle: same
    total = rrd_file(w.root, metrics.FACTORY, ("fac",))
    assert last_update(total) == T0 + STEP
    assert fetch(total, T0, T0 + STEP)[T0 + STEP]["waiting"] == pytest.approx(
        measurement(factory_snapshot(1), "updraft_factory", "fac").values["waiting"]
    )


def test_a_file_of_another_schema_is_left_alone_and_named(monitoring_dir: Path) -> None:
    settings = RrdSettings(step_seconds=STEP)
    root = monitoring_dir / settings.subdir
    old = rrd_file(root, metrics.FACTORY_ENTRY, ("fac", "ce1@site1"))
    old.parent.mkdir(parents=True)
    subprocess.run(
        [
            "rrdtool",
            "create",
            str(old),
            "--start",
            str(T0 - 100),
            "--step",
            str(STEP),
            "DS:waiting:GAUGE:20:0:U",
            "DS:running:COUNTER:20:0:U",
            "DS:gone:GAUGE:20:0:U",
            "RRA:AVERAGE:0.5:1:10",
        ],
        check=True,
    )
    slow = rrd_file(root, metrics.FACTORY_PILOTS, ("fac", "ce1@site1", "vo1"))
    slow.parent.mkdir(parents=True)
    subprocess.run(
        [
            "rrdtool",
            "create",
            str(slow),
            "--start",
            str(T0 - 100),
            "--step",
            "60",
            *[f"DS:{f}:GAUGE:120:0:U" for f in metrics.FACTORY_PILOTS.field_names],
            "RRA:AVERAGE:0.5:1:10",
        ],
        check=True,
    )
    stray = root / "updraft_bogus" / "x.rrd"
    stray.parent.mkdir()
    shutil.copy(old, stray)
    before = {path: digest(path) for path in (old, slow)}

    w = rrd.create(settings, monitoring_dir)
    for k in range(2):
        with pytest.raises(MonitoringError) as raised:
            w.write(factory_snapshot(k))
        message = str(raised.value)
        assert str(old) in message and str(slow) in message and "move it aside" in message
        assert "data sources missing: pending, staging" in message
        assert "running is COUNTER, expected GAUGE" in message and "unexpected data sources: gone" in message
        assert "step is 60 s, the writer's is 10 s" in message
    assert {path: digest(path) for path in (old, slow)} == before
    assert last_update(rrd_file(root, metrics.FACTORY, ("fac",))) == T0 + STEP
    assert last_update(rrd_file(root, metrics.FACTORY_ENTRY, ("fac", "ce2@site2"))) == T0 + STEP

    problems = rrd.check(settings, monitoring_dir)
    assert len(problems) == 3
    (old_problem,) = [p for p in problems if p.startswith(f"{old}:")]
    assert "data sources missing: pending, staging" in old_problem and "move it aside" in old_problem
    assert any(p.startswith(f"{slow}: step is 60 s") for p in problems)
    assert any(p.startswith(f"{stray}: not a measurement of the catalogue") for p in problems)

    old.rename(old.with_name(old.name + ".old"))
    slow.unlink()
    w.write(factory_snapshot(2))  # moved aside: new files, no error
    assert last_update(old) == T0 + 2 * STEP
    assert [p for p in rrd.check(settings, monitoring_dir) if "updraft_bogus" not in p] == []


def test_a_missing_rrdtool_is_a_clear_error(monitoring_dir: Path) -> None:
    w = rrd.create(RrdSettings(binary="/nonexistent/rrdtool"), monitoring_dir)
    with pytest.raises(MonitoringError, match=r"rrdtool not found: apt-get install rrdtool"):
        w.write(factory_snapshot(1))


# --------------------------------------------------------------------------
# Status pages
# --------------------------------------------------------------------------


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values["src"] or "")
        elif tag == "a":
            self.links.append(values["href"] or "")


def links_of(page: Path) -> Links:
    parser = Links()
    parser.feed(page.read_text())
    return parser


def assert_page_is_whole(page: Path) -> Links:
    """Every image exists as a PNG with something in it, every link leads to a page, nothing unescaped."""
    text = page.read_text()
    assert "<script>" not in text
    found = links_of(page)
    for src in found.images:
        image = page.parent / unquote(src)
        data = image.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, image
        assert image.resolve().is_relative_to(page.parent.resolve())
    for href in found.links:
        assert (page.parent / unquote(href)).is_file(), (page, href)
    return found


def pages_writer(directory: Path, **settings) -> status_pages.StatusPagesWriter:
    return status_pages.create(PageSettings(**{"periods": ("hour", "day"), **settings}), directory)


def test_factory_pages_show_every_entry_with_its_graphs(monitoring_dir: Path) -> None:
    w, pages = writer(monitoring_dir), pages_writer(monitoring_dir)
    for k in range(8):
        snapshot = factory_snapshot(k)
        w.write(snapshot)
        pages.write(snapshot)
    folder = monitoring_dir / "html" / "factory-fac"
    index = folder / "index.html"
    found = assert_page_is_whole(index)
    assert {unquote(h) for h in found.links} >= {status_pages.page_file("entry", e) for e in ENTRIES}
    assert "graphs/pilots-hour.png" in found.images and "graphs/timings-day.png" in found.images
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index.read_text()
    for entry in ENTRIES:
        found = assert_page_is_whole(folder / status_pages.page_file("entry", entry))
        kinds = {Path(unquote(src)).name.rsplit("-", 1)[0] for src in found.images}
        assert {"pilots", "requests", "health"} <= kinds
        if entry in ENTRIES[:2]:
            assert {"completed", "usage", "failures"} <= kinds
    assert_page_is_whole(monitoring_dir / "html" / "index.html")
    assert not list(folder.rglob(".*.tmp"))


def test_frontend_pages_show_groups_and_entries(monitoring_dir: Path) -> None:
    w, pages = writer(monitoring_dir), pages_writer(monitoring_dir)
    for k in range(5):
        w.write(frontend_snapshot(k))
    pages.write(frontend_snapshot(4))
    folder = monitoring_dir / "html" / "frontend-vo1"
    found = assert_page_is_whole(folder / "index.html")
    groups = {status_pages.page_file("group", g) for g in ("main", SCRIPT, "lost")}
    assert groups <= {unquote(h) for h in found.links}
    for group in groups:
        assert_page_is_whole(folder / group)
    main = links_of(folder / "group-main.html")
    assert len(main.images) == 2 * 2 * (1 + 3)  # (jobs, slots) x (hour, day) x (group + 3 entries)


def test_graphs_are_redrawn_lazily_and_pages_of_gone_entries_removed(monitoring_dir: Path) -> None:
    w, pages = writer(monitoring_dir), pages_writer(monitoring_dir, periods=("week",))
    w.write(factory_snapshot(1))
    pages.write(factory_snapshot(1))
    folder = monitoring_dir / "html" / "factory-fac"
    week = folder / "graphs" / "pilots-week.png"
    drawn = week.stat().st_mtime_ns
    w.write(factory_snapshot(2))
    pages.write(factory_snapshot(2))
    assert week.stat().st_mtime_ns == drawn  # a week 600 pixels wide changes every 1008 s
    gone = folder / status_pages.page_file("entry", SCRIPT)
    assert gone.is_file()
    smaller = factory_snapshot(3)
    smaller = FactorySnapshot(smaller.factory, smaller.time, smaller.cycle, smaller.entries[:1], smaller.pilots[:2], ())
    pages.write(smaller)
    assert not gone.is_file() and (folder / "entry-ce1@site1.html").is_file()
    assert_page_is_whole(folder / "index.html")
    assert not list((folder / "graphs" / "entry" / path_part("ce2@site2")).rglob("*.png"))
    assert list((folder / "graphs" / "entry" / path_part("ce1@site1")).rglob("*.png"))


def test_pages_are_written_without_graphs_before_the_rrd_files_exist(monitoring_dir: Path) -> None:
    pages_writer(monitoring_dir).write(factory_snapshot(1))
    index = monitoring_dir / "html" / "factory-fac" / "index.html"
    assert links_of(index).images == [] and "No graphs yet" in index.read_text()


def test_a_failing_graph_is_reported_and_the_pages_still_written(monitoring_dir: Path) -> None:
    settings = RrdSettings(step_seconds=STEP)
    w = rrd.create(settings, monitoring_dir)
    w.write(factory_snapshot(1))
    total = rrd_file(w.root, metrics.FACTORY, ("fac",))
    total.write_bytes(b"not an rrd file")
    with pytest.raises(MonitoringError, match=re.escape("graph ")):
        pages_writer(monitoring_dir).write(factory_snapshot(1))
    index = monitoring_dir / "html" / "factory-fac" / "index.html"
    assert_page_is_whole(index)
    assert "graphs/pilots-hour.png" not in links_of(index).images


def test_a_cycle_costs_one_rrdtool_process(monitoring_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    binary = tmp_path / "counting-rrdtool"
    binary.write_text(f'#!/bin/sh\necho "$1" >> \'{log}\'\nexec rrdtool "$@"\n')
    binary.chmod(0o755)

    def runs() -> int:
        count = len(log.read_text().splitlines()) if log.exists() else 0
        log.unlink(missing_ok=True)
        return count

    settings = RrdSettings(step_seconds=STEP, binary=str(binary))
    w = rrd.create(settings, monitoring_dir)
    pages = pages_writer(monitoring_dir, binary=str(binary))
    w.write(factory_snapshot(1))
    assert runs() == 1  # every file created and updated by one process
    w.write(factory_snapshot(2))
    pages.write(factory_snapshot(2))
    assert runs() == 2  # one for the updates, one for all the graphs
    restarted = rrd.create(settings, monitoring_dir)
    restarted.write(factory_snapshot(3))
    assert runs() == 2  # the files it has not seen yet are checked first
    restarted.write(factory_snapshot(4))
    assert runs() == 1


def test_a_big_component_draws_its_graphs_over_several_cycles_missing_ones_first(monitoring_dir: Path) -> None:
    w, pages = writer(monitoring_dir), pages_writer(monitoring_dir, periods=("hour",), max_graphs_per_cycle=5)
    w.write(factory_snapshot(1))
    folder = monitoring_dir / "html" / "factory-fac"
    counts = []
    for _ in range(1, 40):
        pages.write(factory_snapshot(1))
        counts.append(len(list(folder.rglob("*.png"))))
        if len(counts) > 1 and counts[-1] == counts[-2]:
            break
    assert counts[0] == 5 and all(b - a <= 5 for a, b in itertools.pairwise(counts))
    assert counts[-1] > 10  # every graph arrived in the end, a few per cycle
    assert_page_is_whole(folder / "index.html")


def test_frontend_reconfig_warns_about_an_rrd_file_of_another_schema(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from updraft.cli import main

    monitoring = tmp_path / "monitoring"
    old = rrd_file(monitoring / "rrd", metrics.FRONTEND, ("vo",))
    old.parent.mkdir(parents=True)
    subprocess.run(
        ["rrdtool", "create", str(old), "--step", "300", "DS:jobs_idle:GAUGE:600:0:U", "RRA:AVERAGE:0.5:1:10"],
        check=True,
    )
    config = tmp_path / "frontend.yaml"
    config.write_text(
        "name: vo\nvo_collector: 127.0.0.1:1\nwms_collector: 127.0.0.1:2\n"
        "factories: {fac: {identity: u@d}}\ngroups: {main: {}}\n"
        f"work_dir: {tmp_path / 'work'}\n"
        f"monitoring: {{dir: {monitoring}, writers: {{rrd: {{step_seconds: 300}}}}}}\n"
    )
    done = CliRunner().invoke(main, ["frontend", "reconfig", "-c", str(config)])
    assert done.exit_code == 0, done.output
    assert f"warning: monitoring rrd: {old}: data sources missing: jobs_old_idle" in done.output
    assert "move it aside" in done.output
