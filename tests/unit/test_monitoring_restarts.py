"""The restart figures of a frontend snapshot in every writer: catalogue, RRD, InfluxDB, XML, JSON, pages, Grafana."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import xmlschema

from updraft.monitoring import grafana, metrics, rrdtool
from updraft.monitoring.metrics import FRONTEND_RESTARTS, measurements
from updraft.monitoring.snapshot import FrontendSnapshot, GroupEntryRow, RestartRow
from updraft.monitoring.writers import influxdb, json_status, status_pages, xml_status
from updraft.monitoring.writers.rrd import rrd_file
from updraft.monitoring.writers.xml_status import NAMESPACE, schema_path

NOW = 1_800_000_000.0
NS = {"s": NAMESPACE}
SNAPSHOT = FrontendSnapshot(
    "vo",
    NOW,
    4,
    rows=(
        GroupEntryRow("main", "ce1@fac", 2.0, 0.0, 1.0, 2, 1, 1, 0, 4, 1, 10, "none"),
        GroupEntryRow("cms", "ce1@fac", 2.0, 0.0, 1.0, 2, 1, 1, 0, 4, 1, 10, "none"),
    ),
    restarts=(
        RestartRow("main", "ce1@fac", 3, 5, 2, 1234.5, 2469.0),
        RestartRow("main", "unknown", 1, 1, 0, 60.0, 60.0),
        RestartRow("atlas", "ce2@fac", 0, 0, 0, 0.0, 0.0),
    ),
    restarts_unknown=("cms",),
)


def restart_measurements() -> dict[tuple[str, ...], dict[str, float]]:
    return {m.tag_values: dict(m.values) for m in measurements(SNAPSHOT) if m.spec is FRONTEND_RESTARTS}


def test_each_restart_row_is_one_catalogue_measurement_with_every_figure() -> None:
    assert restart_measurements() == {
        ("vo", "main", "ce1@fac"): {
            "restarted_jobs": 3.0,
            "restarts": 5.0,
            "restarts_last_hour": 2.0,
            "badput_seconds": 1234.5,
            "badput_core_seconds": 2469.0,
        },
        ("vo", "main", "unknown"): {
            "restarted_jobs": 1.0,
            "restarts": 1.0,
            "restarts_last_hour": 0.0,
            "badput_seconds": 60.0,
            "badput_core_seconds": 60.0,
        },
        ("vo", "atlas", "ce2@fac"): dict.fromkeys(FRONTEND_RESTARTS.field_names, 0.0),
    }
    assert all(metrics.FIELD_NAME.fullmatch(name) for name in FRONTEND_RESTARTS.field_names)
    assert FRONTEND_RESTARTS in metrics.CATALOGUE


def test_the_rrd_writer_updates_one_file_per_group_and_entry_with_the_figures() -> None:
    [row] = [m for m in measurements(SNAPSHOT) if m.spec is FRONTEND_RESTARTS and m.tag_values[2] == "ce1@fac"]
    path = rrd_file(Path("/m/rrd"), FRONTEND_RESTARTS, row.tag_values)
    assert path == Path("/m/rrd/updraft_frontend_restarts/vo/main/ce1@fac.rrd")
    create = rrdtool.create_args(path, FRONTEND_RESTARTS, 300, int(NOW) - 300)
    assert [a for a in create if a.startswith("DS:")] == [
        f"DS:{name}:GAUGE:600:0:U" for name in FRONTEND_RESTARTS.field_names
    ]
    update = rrdtool.update_args(path, row)
    assert update[-2:] == [":".join(FRONTEND_RESTARTS.field_names), f"{int(NOW)}:3.0:5.0:2.0:1234.5:2469.0"], update


def test_the_influxdb_writer_sends_a_point_per_group_and_entry() -> None:
    text = influxdb.body(influxdb.points_of(measurements(SNAPSHOT)))
    line = next(x for x in text.splitlines() if x.startswith("updraft_frontend_restarts,entry=ce1@fac"))
    assert line == (
        "updraft_frontend_restarts,entry=ce1@fac,frontend=vo,group=main "
        "restarted_jobs=3.0,restarts=5.0,restarts_last_hour=2.0,badput_seconds=1234.5,badput_core_seconds=2469.0 "
        f"{int(NOW)}"
    )


def test_the_xml_files_carry_the_figures_and_validate(tmp_path: Path) -> None:
    writer = xml_status.PLUGIN.create(xml_status.PLUGIN.settings(), tmp_path)
    writer.write(SNAPSHOT)
    folder = tmp_path / "xml"
    schema = xmlschema.XMLSchema10(str(schema_path()))
    for path in folder.rglob("*.xml"):
        with path.open("rb") as stream:
            schema.validate(stream)
    main = ET.parse(folder / "frontend-vo" / "group-main.xml").getroot()
    restarts = main.find("s:restarts", NS)
    assert restarts is not None and restarts.get("restarted_jobs") == "4" and restarts.get("badput_seconds") == "1294.5"
    entries = {e.get("name"): e.attrib for e in restarts.findall("s:entry", NS)}
    assert entries["ce1@fac"] == {
        "name": "ce1@fac",
        "restarted_jobs": "3",
        "restarts": "5",
        "restarts_last_hour": "2",
        "badput_seconds": "1234.5",
        "badput_core_seconds": "2469",
    }
    assert set(entries) == {"ce1@fac", "unknown"}
    # A group whose schedd could not be read has no figures rather than zeros.
    cms = ET.parse(folder / "frontend-vo" / "group-cms.xml").getroot()
    assert cms.find("s:restarts", NS) is None
    summary = ET.parse(folder / "frontend-vo.xml").getroot().find("s:restarts", NS)
    assert summary is not None and summary.get("restarts") == "6"


def test_the_json_status_holds_the_rows_and_the_unknown_groups(tmp_path: Path) -> None:
    writer = json_status.JsonStatusWriter(tmp_path)
    writer.write(SNAPSHOT)
    data = json.loads((tmp_path / "frontend-vo.json").read_text())
    assert data["restarts"][0] == {
        "group": "main",
        "entry": "ce1@fac",
        "restarted_jobs": 3,
        "restarts": 5,
        "restarts_last_hour": 2,
        "badput_seconds": 1234.5,
        "badput_core_seconds": 2469.0,
    }
    assert data["restarts_unknown"] == ["cms"]


def test_the_status_pages_show_restarts_per_group_and_per_entry() -> None:
    env = status_pages.templates()
    found = status_pages.pages_of(Path("/m/rrd"), SNAPSHOT)
    drawn = {graph.png("day") for page in found for graph in page.all_graphs}
    pages = {page.file: status_pages.render_page(env, page, ("day",), drawn, 120) for page in found}
    assert {"index.html", "group-main.html", "group-cms.html", "group-atlas.html"} <= set(pages)
    index = pages["index.html"]
    assert "Restarted jobs" in index and "1294.5" in index
    main = pages["group-main.html"]
    assert "<td>ce1@fac</td>" in main and "2469" in main and "<td>unknown</td>" in main
    assert 'src="graphs/group/main/restarts-day.png"' in main
    assert "Unknown this cycle" in pages["group-cms.html"] and "restarts-day.png" not in pages["group-cms.html"]
    atlas = pages["group-atlas.html"]
    assert "<td>ce2@fac</td>" in atlas and "No restarted job in the queue." not in atlas


def test_the_group_dashboard_graphs_the_restart_figures() -> None:
    dashboard = grafana.FRONTEND_GROUP_DASHBOARD
    assert grafana.problems(dashboard) == []
    queried = {
        field
        for row in dashboard.rows
        for panel in row.panels
        for query in panel.queries
        if query.measurement == FRONTEND_RESTARTS.name and isinstance(query, grafana.Query)
        for field in query.fields
    }
    assert {"restarted_jobs", "restarts", "restarts_last_hour", "badput_core_seconds"} <= queried
    shipped = Path(__file__).parents[2] / "etc" / "grafana" / "dashboards" / dashboard.file_name
    assert json.loads(shipped.read_text()) == grafana.dashboard_json(dashboard)
