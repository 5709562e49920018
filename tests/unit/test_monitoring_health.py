"""Entry health in every monitoring output: measurements, InfluxDB lines, RRD, JSON, XML, pages and Grafana."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from updraft.errors import MonitoringError
from updraft.factory.health_model import HealthState
from updraft.monitoring import docs, grafana, health_history, metrics
from updraft.monitoring.snapshot import EntryStatus, FactorySnapshot, HealthRow, TransitionRow
from updraft.monitoring.writers import influxdb, json_status, rrd, status_pages, xml_status
from updraft.monitoring.writers.status_pages import PageSettings, StatusPagesWriter

NOW = 1_767_225_600.0


def change(entry: str, old: str, new: str, at: float, by: str = "policy", reason: str = "r") -> TransitionRow:
    return TransitionRow(entry, old, new, reason, at, by, f"{entry}|{at:.3f}|{old}>{new}")


DEGRADED = HealthRow("ce1", "degraded", "held pilots: 6 of 10", NOW - 300, NOW + 300, 5)
BANNED = HealthRow("ce2", "banned", "site down", NOW - 60, None, None, "alice", NOW + 3600)
ACTIVE = HealthRow("ce3", "active", "", NOW - 86400)
TO_BANNED = change("ce2", "active", "banned", NOW - 60, "alice", "site down")
SNAPSHOT = FactorySnapshot(
    "fac",
    NOW,
    9,
    entries=(EntryStatus("ce1"), EntryStatus("ce2"), EntryStatus("ce3")),
    health=(DEGRADED, BANNED, ACTIVE),
    transitions=(change("ce1", "active", "degraded", NOW - 300.4, reason='held "6" of 10\nin 1h'), TO_BANNED),
)


def by_spec(spec: metrics.MeasurementSpec, snapshot: FactorySnapshot = SNAPSHOT) -> list[metrics.Measurement]:
    return [m for m in metrics.measurements(snapshot) if m.spec is spec]


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------


def test_the_codes_cover_every_health_state_worst_highest() -> None:
    assert set(metrics.HEALTH_CODES) == {state.value for state in HealthState}
    codes = metrics.HEALTH_CODES
    assert codes["active"] < codes["degraded"] < codes["probing"] < codes["banned"]
    assert dict(codes) == {"active": 0, "degraded": 1, "probing": 2, "banned": 3}
    assert math.isnan(metrics.health_code("quarantined"))


def test_each_entry_has_its_state_code_override_cap_and_time_in_state() -> None:
    found = {m.tag_values: dict(m.values) for m in by_spec(metrics.FACTORY_HEALTH)}
    assert found[("fac", "ce1")] == {"state": 1.0, "overridden": 0.0, "cap": 5.0, "state_seconds": 300.0}
    ce3 = found[("fac", "ce3")]
    assert (ce3["state"], ce3["overridden"], ce3["state_seconds"]) == (0.0, 0.0, 86400.0) and math.isnan(ce3["cap"])
    ce2 = found[("fac", "ce2")]
    assert ce2["state"] == 3.0 and ce2["overridden"] == 1.0 and math.isnan(ce2["cap"])
    assert all(m.time == NOW for m in by_spec(metrics.FACTORY_HEALTH))


def test_each_change_is_an_event_at_its_own_time_with_tags_codes_and_reason() -> None:
    first, second = by_spec(metrics.FACTORY_HEALTH_CHANGES)
    assert metrics.FACTORY_HEALTH_CHANGES.event and not metrics.FACTORY_HEALTH.event
    assert dict(first.tags) == {"factory": "fac", "entry": "ce1", "old": "active", "new": "degraded", "by": "policy"}
    assert dict(first.values) == {"changes": 1.0, "old_state": 0.0, "new_state": 1.0}
    assert first.time == NOW - 300.4 and first.texts == {"reason": 'held "6" of 10\nin 1h'}
    assert dict(second.tags)["by"] == "alice" and second.values["new_state"] == 3.0


def test_no_health_rows_no_health_measurements() -> None:
    plain = FactorySnapshot("fac", NOW, 1, entries=(EntryStatus("ce1"),))
    names = {m.name for m in metrics.measurements(plain)}
    assert not names & {metrics.FACTORY_HEALTH.name, metrics.FACTORY_HEALTH_CHANGES.name}


# --------------------------------------------------------------------------
# InfluxDB and RRD
# --------------------------------------------------------------------------


def test_influx_lines_carry_the_state_and_each_change_with_its_reason_quoted() -> None:
    lines = influxdb.body(influxdb.points_of(metrics.measurements(SNAPSHOT))).split("\n")
    assert (
        "updraft_factory_health,entry=ce1,factory=fac state=1.0,overridden=0.0,cap=5.0,state_seconds=300.0 1767225600"
        in lines
    )
    # An uncapped entry's cap is left out, not written as 0 (which would read as "no pilots").
    assert (
        "updraft_factory_health,entry=ce2,factory=fac state=3.0,overridden=1.0,state_seconds=60.0 1767225600" in lines
    )
    assert (
        "updraft_factory_health_changes,by=policy,entry=ce1,factory=fac,new=degraded,old=active "
        'changes=1.0,old_state=0.0,new_state=1.0,reason="held \\"6\\" of 10 in 1h" 1767225299'
    ) in lines


def test_string_fields_escape_backslashes_and_are_cut() -> None:
    assert influxdb.field_text("a\\b\x00c\r\n") == "a\\b c "
    assert len(influxdb.field_text("x" * 5000)) == influxdb.TEXT_LIMIT
    point = influxdb.Point("m", (), (("n", 1.0), ("t", 'a\\"b')), 5)
    assert influxdb.line(point) == 'm n=1.0,t="a\\\\\\"b" 5'


def test_rrd_stores_the_state_per_entry_in_new_files_but_not_the_changes() -> None:
    stored = rrd.stored_measurements(SNAPSHOT)
    assert {m.name for m in stored} == {"updraft_factory", "updraft_factory_entry", "updraft_factory_health"}
    root = Path("/mon/rrd")
    health = [rrd.rrd_file(root, m.spec, m.tag_values) for m in stored if m.spec is metrics.FACTORY_HEALTH]
    assert sorted(health) == [root / "updraft_factory_health" / "fac" / f"ce{i}.rrd" for i in (1, 2, 3)]
    updates = [
        rrd.plan_cycle([(health[0], m)], set(), set(), 300).commands
        for m in stored
        if m.tag_values == ("fac", "ce1") and m.spec is metrics.FACTORY_HEALTH
    ]
    (commands,) = updates
    assert commands[-1][-1] == f"{int(NOW)}:1.0:0.0:5.0:300.0"
    ce2 = next(m for m in stored if m.tag_values == ("fac", "ce2") and m.spec is metrics.FACTORY_HEALTH)
    assert rrd.plan_cycle([(health[1], ce2)], {health[1]}, set(), 300).commands[0][-1] == f"{int(NOW)}:3.0:1.0:U:60.0"


# --------------------------------------------------------------------------
# JSON and XML
# --------------------------------------------------------------------------


def test_json_status_has_each_entrys_health_and_the_cycles_changes(tmp_path: Path) -> None:
    writer = json_status.JsonStatusWriter(tmp_path)
    writer.write(SNAPSHOT)
    data = json.loads(writer.path_for(SNAPSHOT).read_text())
    assert data["health"][1] == {
        "entry": "ce2",
        "state": "banned",
        "reason": "site down",
        "since": NOW - 60,
        "next_review": None,
        "cap": None,
        "override_by": "alice",
        "override_until": NOW + 3600,
    }
    assert [(t["entry"], t["old"], t["new"], t["by"]) for t in data["transitions"]] == [
        ("ce1", "active", "degraded", "policy"),
        ("ce2", "active", "banned", "alice"),
    ]


NS = {"s": xml_status.NAMESPACE}


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema10:
    return xmlschema.XMLSchema10(str(xml_status.schema_path()))


def test_xml_documents_carry_health_and_changes_and_validate(tmp_path: Path, schema) -> None:
    xml_status.XmlStatusWriter(tmp_path).write(SNAPSHOT)
    for path in tmp_path.rglob("*.xml"):
        with path.open("rb") as stream:
            schema.validate(stream)
    factory = ET.parse(tmp_path / "factory-fac.xml").getroot()
    rows = {e.get("name"): e.attrib for e in factory.findall("s:health/s:entry", NS)}
    assert rows["ce1"] == {
        "name": "ce1",
        "state": "degraded",
        "reason": "held pilots: 6 of 10",
        "since": "2025-12-31T23:55:00.000Z",
        "next_review": "2026-01-01T00:05:00.000Z",
        "cap": "5",
    }
    assert rows["ce2"]["override_by"] == "alice" and rows["ce2"]["override_until"] == "2026-01-01T01:00:00.000Z"
    changes = [t.attrib for t in factory.findall("s:transitions/s:transition", NS)]
    assert [(c["entry"], c["old"], c["new"], c["by"]) for c in changes] == [
        ("ce1", "active", "degraded", "policy"),
        ("ce2", "active", "banned", "alice"),
    ]
    assert changes[0]["at"] == "2025-12-31T23:54:59.600Z"
    entry = ET.parse(tmp_path / "factory-fac" / "entry-ce2.xml").getroot()
    assert entry.find("s:health", NS).get("state") == "banned"
    assert [t.get("new") for t in entry.findall("s:transitions/s:transition", NS)] == ["banned"]
    quiet = ET.parse(tmp_path / "factory-fac" / "entry-ce3.xml").getroot()
    assert quiet.findall("s:transitions/s:transition", NS) == []


def test_the_schema_refuses_a_state_it_does_not_know(tmp_path: Path, schema) -> None:
    bad = FactorySnapshot("fac", NOW, 1, entries=(EntryStatus("ce1"),), health=(HealthRow("ce1", "sulking", "", NOW),))
    xml_status.XmlStatusWriter(tmp_path).write(bad)
    with (tmp_path / "factory-fac.xml").open("rb") as stream, pytest.raises(xmlschema.XMLSchemaValidationError):
        schema.validate(stream)


# --------------------------------------------------------------------------
# The history of changes
# --------------------------------------------------------------------------


def test_history_merges_without_duplicates_keeps_the_newest_and_forgets_unlisted_entries() -> None:
    old = {
        "ce1": tuple(change("ce1", "active", "degraded", NOW + i) for i in range(3)),
        "gone": (change("gone", "a", "b", NOW),),
    }
    new = [
        change("ce1", "active", "degraded", NOW + 2),
        change("ce1", "degraded", "banned", NOW + 10),
        change("ce9", "active", "banned", NOW),
    ]
    merged = health_history.merged(old, new, ["ce1", "ce2"], per_entry=3)
    assert list(merged) == ["ce1"]
    assert [r.at for r in merged["ce1"]] == [NOW + 1, NOW + 2, NOW + 10]
    assert health_history.newest_first(merged, 2) == [merged["ce1"][2], merged["ce1"][1]]


def test_history_file_round_trips_and_names_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    history = {"ce1": (SNAPSHOT.transitions[0],), "ce2": (TO_BANNED,)}
    health_history.save(path, history)
    assert health_history.load(path) == history
    assert health_history.load(tmp_path / "none.json") == {}
    path.write_text('{"version": 1, "entries": {"ce1": [{"entry": "ce1"}]}}')
    with pytest.raises(MonitoringError, match=r"h.json: entries.ce1: expected objects with keys"):
        health_history.load(path)
    path.write_text("[1")
    with pytest.raises(MonitoringError, match=r"h\.json: not JSON"):
        health_history.load(path)


def snapshot_at(cycle: int, transitions: tuple[TransitionRow, ...], health: tuple[HealthRow, ...]) -> FactorySnapshot:
    return FactorySnapshot(
        "fac",
        NOW + 60 * cycle,
        cycle,
        entries=(EntryStatus("ce1"), EntryStatus("ce2")),
        health=health,
        transitions=transitions,
    )


def pages_writer(tmp_path: Path, history_per_entry: int = 50) -> StatusPagesWriter:
    """No rrd files exist here, so rrdtool is never run (a missing binary would fail loudly)."""
    return StatusPagesWriter(PageSettings(binary="/nonexistent/rrdtool", history_per_entry=history_per_entry), tmp_path)


def test_pages_show_each_entrys_state_and_the_history_of_earlier_cycles_after_a_restart(tmp_path: Path) -> None:
    first = snapshot_at(1, (change("ce1", "active", "degraded", NOW + 60, reason="held 6 of 10"),), (DEGRADED,))
    pages_writer(tmp_path).write(first)
    banned = HealthRow("ce1", "banned", "validation failed 9 of 10", NOW + 120, None, None, "bob", NOW + 7200)
    second = snapshot_at(
        2, (change("ce1", "degraded", "banned", NOW + 120, "bob", "validation failed 9 of 10"),), (banned,)
    )
    pages_writer(tmp_path).write(second)  # a new writer: as after a restart
    stored = json.loads((tmp_path / "health-history" / "factory-fac.json").read_text())
    assert [(r["old"], r["new"]) for r in stored["entries"]["ce1"]] == [("active", "degraded"), ("degraded", "banned")]
    page = (tmp_path / "html" / "factory-fac" / "entry-ce1.html").read_text()
    health = page.split("<h2>Health</h2>", 1)[1].split("<h3>", 1)[0]
    assert '<span class="health health-banned">banned</span>' in health
    assert "validation failed 9 of 10" in health and "2026-01-01 00:02:00 UTC" in health
    assert "set by bob until 2026-01-01 02:00:00 UTC" in health
    history = page.split("<h3>Health history (newest first)</h3>", 1)[1].split("</table>", 1)[0]
    assert history.index("validation failed 9 of 10") < history.index("held 6 of 10")
    index = (tmp_path / "html" / "factory-fac" / "index.html").read_text()
    assert '<td><span class="health health-banned">banned</span></td><td>validation failed 9 of 10</td>' in index
    recent = index.split("<h2>Recent changes of health</h2>", 1)[1]
    assert recent.count("<tr><td>2026-01-01") == 2


def test_the_history_is_bounded_per_entry_and_a_quiet_cycle_does_not_rewrite_it(tmp_path: Path) -> None:
    writer = pages_writer(tmp_path, history_per_entry=3)
    for cycle in range(1, 6):
        old, new = ("active", "degraded") if cycle % 2 else ("degraded", "active")
        writer.write(snapshot_at(cycle, (change("ce1", old, new, NOW + 60 * cycle),), ()))
    path = tmp_path / "health-history" / "factory-fac.json"
    assert [r["at"] for r in json.loads(path.read_text())["entries"]["ce1"]] == [NOW + 180, NOW + 240, NOW + 300]
    before = path.stat().st_mtime_ns, path.stat().st_ino
    writer.write(snapshot_at(6, (), ()))
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before
    page = (tmp_path / "html" / "factory-fac" / "entry-ce1.html").read_text()
    assert page.count("<tr><td>2026-01-01") == 3


def test_an_unreadable_history_is_moved_aside_and_reported_and_the_pages_still_written(tmp_path: Path) -> None:
    path = tmp_path / "health-history" / "factory-fac.json"
    path.parent.mkdir()
    path.write_text("not json")
    with pytest.raises(MonitoringError, match=r"factory-fac\.json: not JSON.*moved aside"):
        pages_writer(tmp_path).write(snapshot_at(1, (TO_BANNED,), ()))
    assert (path.parent / "factory-fac.json.bad").read_text() == "not json"
    assert [r["new"] for r in json.loads(path.read_text())["entries"]["ce2"]] == ["banned"]
    assert (tmp_path / "html" / "factory-fac" / "entry-ce2.html").is_file()


def test_the_operators_words_are_escaped_on_every_page(tmp_path: Path) -> None:
    words = "<b>maintenance</b> & co"
    row = HealthRow("ce1", "banned", words, NOW, None, None, "<i>carol</i>", NOW + 60)
    pages_writer(tmp_path).write(
        snapshot_at(1, (change("ce1", "active", "banned", NOW, "<i>carol</i>", words),), (row,))
    )
    pages = [p.read_text() for p in (tmp_path / "html").rglob("*.html")]
    assert pages and not any("<b>maintenance" in text or "<i>carol" in text for text in pages)
    assert (
        "&lt;b&gt;maintenance&lt;/b&gt; &amp; co" in (tmp_path / "html" / "factory-fac" / "entry-ce1.html").read_text()
    )


def test_the_entry_page_graphs_the_health_state_from_its_rrd_file() -> None:
    graphs = {g.kind: g for g in status_pages.entry_graphs(Path("/mon/rrd"), SNAPSHOT, "ce1")}
    (series,) = graphs["health"].series
    assert series.rrd == Path("/mon/rrd/updraft_factory_health/fac/ce1.rrd") and series.ds == "state"
    assert graphs["health"].unit == "0=active 1=degraded 2=probing 3=banned"


# --------------------------------------------------------------------------
# Grafana and docs
# --------------------------------------------------------------------------


def _panels(uid: str) -> dict[str, dict]:
    dashboard = next(d for d in grafana.DASHBOARDS if d.uid == uid)
    return {p["title"]: p for p in grafana.dashboard_json(dashboard)["panels"]}


@pytest.mark.parametrize("uid", ["updraft-factory", "updraft-entry"])
def test_a_state_timeline_maps_each_code_to_its_state_and_colour(uid: str) -> None:
    panel = _panels(uid)["Entry health"]
    assert panel["type"] == "state-timeline"
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    assert {code: (o["text"], o["color"]) for code, o in mapping["options"].items()} == {
        "0": ("active", "green"),
        "1": ("degraded", "orange"),
        "2": ("probing", "blue"),
        "3": ("banned", "red"),
    }
    (target,) = panel["targets"]
    assert target["query"].startswith('SELECT max("state") AS "state" FROM "updraft_factory_health" WHERE')


def test_the_factory_timeline_has_a_band_per_entry_and_the_changes_a_table() -> None:
    panels = _panels("updraft-factory")
    (timeline,) = panels["Entry health"]["targets"]
    assert 'GROUP BY time($__interval), "entry"' in timeline["query"] and timeline["alias"] == "$tag_entry"
    table = panels["Health changes"]
    assert table["type"] == "table" and table["targets"][0]["resultFormat"] == "table"
    assert table["targets"][0]["query"] == (
        'SELECT "entry", "old", "new", "by", "reason" FROM "updraft_factory_health_changes" '
        'WHERE "factory" =~ /^$factory$/ AND $timeFilter ORDER BY time DESC LIMIT 200'
    )


@pytest.mark.parametrize(
    ("panel", "problem"),
    [
        (
            grafana.Panel(
                "p", (grafana.Events("updraft_factory_health_changes", ("entry",), ("factory",)),), kind="table"
            ),
            "select a field or text too",
        ),
        (
            grafana.Panel("p", (grafana.Events("updraft_factory_health", ("state",), ("factory",)),), kind="table"),
            "not an event measurement",
        ),
        (
            grafana.Panel("p", (grafana.Events("updraft_factory_health_changes", ("reason",), ("factory",)),)),
            "go in a table panel",
        ),
        (
            grafana.Panel("p", (grafana.Query("updraft_factory", ("running",), ("factory",)),), kind="state-timeline"),
            "a state-timeline shows",
        ),
        (
            grafana.Panel(
                "p", (grafana.Events("updraft_factory_health_changes", ("reasons",), ("factory",)),), kind="table"
            ),
            "no field, text or tag reasons",
        ),
    ],
)
def test_problems_catch_health_panels_that_would_be_wrong(panel: grafana.Panel, problem: str) -> None:
    dashboard = grafana.Dashboard(
        "d", "D", "", (grafana.Variable("factory", "F", "updraft_factory"),), (grafana.Row("r", (panel,)),)
    )
    assert any(problem in p for p in grafana.problems(dashboard)), grafana.problems(dashboard)


def test_the_metrics_docs_give_the_codes_and_mark_the_changes_as_events() -> None:
    text = docs.metrics_markdown()
    assert "| 0 | active | as many as requested |" in text and "| 3 | banned | none |" in text
    section = text.split("### `updraft_factory_health_changes`\n", 1)[1]
    assert "| `reason` | text |" in section and "not stored in RRD files" in section
