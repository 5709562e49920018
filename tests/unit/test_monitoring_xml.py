"""The XML status writer: every file it writes validates against the shipped XSD and says what the snapshot says."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
import xmlschema

from updraft.errors import MonitoringError
from updraft.monitoring import registry
from updraft.monitoring.config import validate_writers
from updraft.monitoring.snapshot import (
    COMPLETED_COUNTERS,
    FRONTEND_SUMS,
    CompletedRow,
    EntryStatus,
    FactorySnapshot,
    FrontendSnapshot,
    GroupEntryRow,
    PilotRow,
)
from updraft.monitoring.writers import xml_status
from updraft.monitoring.writers.xml_status import (
    NAMESPACE,
    PLUGIN,
    XmlStatusWriter,
    schema_path,
)

NS = {"s": NAMESPACE}
PROBLEM = 'schedd "a<b" & co: <timeout>'

FACTORY = FactorySnapshot(
    factory="fac1",
    time=1714564800.25,
    cycle=42,
    entries=(
        EntryStatus("ce1", False, 8, waiting=2, pending=3, staging=1, running=10, held=1),
        EntryStatus("ce2", True, 1, running=4),
        EntryStatus("ce3", False, 2),
    ),
    pilots=(
        PilotRow("ce1", "vo-a", 1, 2, 1, 6, 1, 48, 5, 20, 3, 1, 1, ("entry.max_idle", "factory.max_held")),
        PilotRow("ce1", "vo-b", 1, 1, 0, 4, 0, 32, 2, 10, 1, 0, 0, ()),
        PilotRow("ce2", "vo-a", running=4, cores_running=4, limits_hit=("entry.downtime",)),
    ),
    completed=(
        CompletedRow(
            "ce1", "vo-a", 20, 15, 4, 1, 0, 72000, 30, 3, 576000, 500000, 450000, 50000, {"validate": 3, "stage": 1}
        ),
        CompletedRow("ce1", "vo-b", 5, 5, 0, 0, 0, 18000, 9, 0, 144000, 140000, 139000, 1000),
        CompletedRow("ce3", "vo-a", 2, 0, 2, 0, 0, 60, 0, 2, 120, 0, 0, 0, {"startup": 2}),
    ),
    rejected_requests=2,
    problems=(PROBLEM, "entry ce2 in downtime"),
    timings={"observe": 0.1234, "decide": 0.002, "act": 1.5, "account": 0.0},
)


def _row(group: str, entry: str, idle: float, bound: tuple[str, ...] = (), down: bool = False) -> GroupEntryRow:
    return GroupEntryRow(group, entry, idle, idle / 2, 3.0, 8, 3, 5, 0, 32, 4, 40, "idle", bound, down)


FRONTEND = FrontendSnapshot(
    frontend="vo-a",
    time=1714564801.0,
    cycle=7,
    rows=(
        _row("main", "ce1@fac1", 10 / 3, ("group.max_idle_per_entry", "group.curb", "frontend.curb")),
        _row("main", "ce2@fac1", 2 / 3, ("entry.downtime",), down=True),
        _row("cpu-heavy", "ce1@fac1", 5.0),
    ),
    unmatched_jobs={"main": 4, "orphans": 7},
    downtime_jobs={"main": 2},
    problems=(PROBLEM,),
    timings={"observe": 0.5, "decide": 0.01, "publish": 0.2},
)


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema10:
    return xmlschema.XMLSchema10(str(schema_path()))


def _written(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _validate(schema: xmlschema.XMLSchema10, path: Path) -> None:
    """From an open file: xmlschema would read a path as a URL, and path_part's names contain '%'."""
    with path.open("rb") as stream:
        schema.validate(stream)


def _root(path: Path) -> ET.Element:
    return ET.parse(path).getroot()


def _attrs(element: ET.Element, keys) -> dict[str, float]:
    return {key: float(element.get(key)) for key in keys}


def _write(tmp_path: Path, *snapshots) -> Path:
    writer = PLUGIN.create(PLUGIN.settings(), tmp_path)
    for snapshot in snapshots:
        writer.write(snapshot)
    return tmp_path / "xml"


# --------------------------------------------------------------------------
# Files and schema
# --------------------------------------------------------------------------


def test_every_written_file_validates_against_the_schema(tmp_path: Path, schema) -> None:
    folder = _write(tmp_path, FACTORY, FRONTEND)
    assert sorted(p.relative_to(folder).as_posix() for p in _written(folder)) == [
        "factory-fac1.xml",
        "factory-fac1/entry-ce1.xml",
        "factory-fac1/entry-ce2.xml",
        "factory-fac1/entry-ce3.xml",
        "frontend-vo-a.xml",
        "frontend-vo-a/group-cpu-heavy.xml",
        "frontend-vo-a/group-main.xml",
        "frontend-vo-a/group-orphans.xml",
    ]
    for path in _written(folder):
        _validate(schema, path)


def test_roots_carry_namespace_schema_version_and_cycle_time(tmp_path: Path) -> None:
    folder = _write(tmp_path, FACTORY, FRONTEND)
    for path in _written(folder):
        root = _root(path)
        assert root.tag.startswith(f"{{{NAMESPACE}}}")
        assert root.get("schemaVersion") == "1"
    factory = _root(folder / "factory-fac1.xml")
    assert (factory.get("name"), factory.get("cycle")) == ("fac1", "42")
    assert factory.get("time") == "2024-05-01T12:00:00.250Z" and factory.get("epoch") == "1714564800.25"
    frontend = _root(folder / "frontend-vo-a.xml")
    assert frontend.get("time") == "2024-05-01T12:00:01.000Z" and frontend.get("epoch") == "1714564801"


def test_the_writer_is_the_registered_xml_plugin_and_its_subdir_is_configurable(tmp_path: Path) -> None:
    assert registry.plugin("xml") is PLUGIN
    (writer,) = registry.build(validate_writers({"xml": {"subdir": "status-xml"}}), tmp_path)
    assert isinstance(writer, XmlStatusWriter)
    assert writer.name == "xml" and writer.directory == tmp_path / "status-xml"
    writer.write(FRONTEND)
    assert (tmp_path / "status-xml" / "frontend-vo-a.xml").is_file()
    with pytest.raises(ValueError, match=r"xml\.subdir"):
        validate_writers({"xml": {"subdir": "../elsewhere"}})
    with pytest.raises(ValueError, match="unknown key"):
        validate_writers({"xml": {"sub_dir": "x"}})


def test_the_schema_is_package_data() -> None:
    assert schema_path().is_file()
    text = Path(__file__).resolve().parents[2].joinpath("setup.cfg").read_text()
    assert "schema/*.xsd" in text


def test_xmllint_accepts_the_schema_and_the_files(tmp_path: Path) -> None:
    folder = _write(tmp_path, FACTORY, FRONTEND)
    result = subprocess.run(
        ["xmllint", "--noout", "--schema", str(schema_path()), *map(str, _written(folder))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------
# Values read back
# --------------------------------------------------------------------------


def test_factory_file_says_what_the_snapshot_says(tmp_path: Path) -> None:
    root = _root(_write(tmp_path, FACTORY) / "factory-fac1.xml")
    totals = root.find("s:totals", NS)
    assert _attrs(totals, FACTORY.totals()) == FACTORY.totals()
    entries = root.findall("s:entries/s:entry", NS)
    assert [e.get("name") for e in entries] == ["ce1", "ce2", "ce3"]
    for element, entry in zip(entries, FACTORY.entries, strict=True):
        assert element.get("in_downtime") == ("true" if entry.in_downtime else "false")
        assert int(element.get("cores_per_pilot")) == entry.cores_per_pilot
        assert {k: int(element.get(k)) for k in ("waiting", "pending", "staging", "running", "held", "idle")} == {
            "waiting": entry.waiting,
            "pending": entry.pending,
            "staging": entry.staging,
            "running": entry.running,
            "held": entry.held,
            "idle": entry.idle,
        }
    assert root.find("s:rejected_requests", NS).get("count") == "2"
    assert [p.text for p in root.findall("s:problems/s:problem", NS)] == list(FACTORY.problems)
    assert {p.get("name"): float(p.get("seconds")) for p in root.findall("s:timings/s:phase", NS)} == {
        "observe": 0.123,
        "decide": 0.002,
        "act": 1.5,
        "account": 0.0,
    }


def test_entry_file_has_pilots_and_completed_totals_per_frontend(tmp_path: Path) -> None:
    root = _root(_write(tmp_path, FACTORY) / "factory-fac1" / "entry-ce1.xml")
    assert (root.get("factory"), root.get("name"), root.get("in_downtime"), root.get("cores_per_pilot")) == (
        "fac1",
        "ce1",
        "false",
        "8",
    )
    frontends = root.findall("s:pilots/s:frontend", NS)
    rows = FACTORY.rows_of("ce1")
    assert [f.get("name") for f in frontends] == ["vo-a", "vo-b"]
    keys = (
        "waiting",
        "pending",
        "staging",
        "running",
        "held",
        "idle",
        "cores_running",
        "requested_idle",
        "requested_max",
        "submitted",
        "removed",
        "released",
    )
    for element, row in zip(frontends, rows, strict=True):
        assert {k: int(element.get(k)) for k in keys} == {k: getattr(row, k) for k in keys}
        assert tuple(limit.get("name") for limit in element.findall("s:limit", NS)) == row.limits_hit
    totals = root.find("s:totals", NS)
    assert int(totals.get("running")) == 10 and int(totals.get("idle")) == 6
    assert int(totals.get("cores_running")) == 80 and int(totals.get("requested_max")) == 30
    completed = root.findall("s:completed/s:frontend", NS)
    for element, completed_row in zip(completed, FACTORY.completed_of("ce1"), strict=True):
        assert element.get("name") == completed_row.frontend
        assert {k: int(element.get(k)) for k in COMPLETED_COUNTERS} == {
            k: getattr(completed_row, k) for k in COMPLETED_COUNTERS
        }
        steps = {s.get("name"): int(s.get("count")) for s in element.findall("s:failed_step", NS)}
        assert steps == dict(completed_row.failed_by_step)


def test_an_entry_without_pilots_or_history_still_has_its_file(tmp_path: Path) -> None:
    root = _root(_write(tmp_path, FACTORY) / "factory-fac1" / "entry-ce3.xml")
    assert root.findall("s:pilots/s:frontend", NS) == []
    assert [f.get("name") for f in root.findall("s:completed/s:frontend", NS)] == ["vo-a"]
    assert root.find("s:totals", NS).get("running") == "0"


def test_frontend_file_has_totals_and_each_group_in_summary(tmp_path: Path) -> None:
    root = _root(_write(tmp_path, FRONTEND) / "frontend-vo-a.xml")
    totals = _attrs(root.find("s:totals", NS), FRONTEND.totals())
    assert totals == pytest.approx(FRONTEND.totals(), abs=5e-4)
    assert totals["jobs_unmatched"] == 11 and totals["jobs_downtime"] == 2
    groups = {g.get("name"): g for g in root.findall("s:groups/s:group", NS)}
    assert list(groups) == ["cpu-heavy", "main", "orphans"]
    for name, element in groups.items():
        expected = FRONTEND.group_totals(name)
        assert _attrs(element, expected) == pytest.approx(expected, abs=5e-4)
        assert int(element.get("entries")) == len(FRONTEND.rows_of(name))
    assert groups["main"].get("jobs_idle") == "4"  # 10/3 + 2/3, summed before rounding
    assert groups["orphans"].get("jobs_unmatched") == "7" and groups["orphans"].get("entries") == "0"
    assert [p.text for p in root.findall("s:problems/s:problem", NS)] == [PROBLEM]


def test_group_file_splits_bound_by_into_limits_and_curbs(tmp_path: Path) -> None:
    root = _root(_write(tmp_path, FRONTEND) / "frontend-vo-a" / "group-main.xml")
    assert (root.get("frontend"), root.get("name")) == ("vo-a", "main")
    entries = root.findall("s:entries/s:entry", NS)
    assert [e.get("name") for e in entries] == ["ce1@fac1", "ce2@fac1"]
    first, second = entries
    assert first.get("jobs_idle") == "3.333" and first.get("jobs_old_idle") == "1.667"
    ints = [k for k in FRONTEND_SUMS if not k.startswith("jobs_")]
    assert {k: int(first.get(k)) for k in ints} == {k: getattr(FRONTEND.rows[0], k) for k in ints}
    assert [x.get("name") for x in first.findall("s:limit", NS)] == ["group.max_idle_per_entry"]
    assert [x.get("name") for x in first.findall("s:curb", NS)] == ["group.curb", "frontend.curb"]
    assert first.get("remove") == "idle" and first.get("in_downtime") == "false"
    assert second.get("in_downtime") == "true" and second.findall("s:curb", NS) == []
    assert root.find("s:totals", NS).get("jobs_downtime") == "2"


def test_numbers_are_integers_or_short_decimals_never_exponents() -> None:
    assert xml_status.as_integer(12.0) == "12"
    assert xml_status.as_decimal(10 / 3) == "3.333"
    assert xml_status.as_decimal(2.0) == "2" and xml_status.as_decimal(-0.0001) == "0"
    assert xml_status.as_decimal(1e-7) == "0" and xml_status.as_decimal(1e20) == "100000000000000000000"
    assert xml_status.iso_time(0.9996) == "1970-01-01T00:00:01.000Z" and xml_status.epoch_seconds(0.9996) == "1"
    assert xml_status.iso_time(1714564800.0125) == "2024-05-01T12:00:00.012Z"
    assert xml_status.epoch_seconds(1714564800.0125) == "1714564800.012"


def test_a_non_finite_number_is_a_monitoring_error_not_an_invalid_file(tmp_path: Path) -> None:
    broken = replace(FRONTEND, timings={"observe": float("nan")})
    with pytest.raises(MonitoringError, match="timing observe"):
        _write(tmp_path, broken)
    assert not (tmp_path / "xml" / "frontend-vo-a.xml").exists()


def test_characters_xml_cannot_hold_are_replaced_and_the_file_stays_valid(tmp_path: Path, schema) -> None:
    odd = replace(
        FRONTEND,
        rows=(_row("g\x01", "ce\x1b[31m@fac", 1.0),),
        problems=("bell\x07 ünïcode ☃",),
        unmatched_jobs={},
        downtime_jobs={},
    )
    folder = _write(tmp_path, odd)
    for path in _written(folder):
        _validate(schema, path)
        assert path.read_bytes().isascii()
    root = _root(folder / "frontend-vo-a.xml")
    assert root.find("s:problems/s:problem", NS).text == "bell\ufffd ünïcode ☃"
    assert root.find("s:groups/s:group", NS).get("name") == "g\ufffd"


# --------------------------------------------------------------------------
# Writing: atomic, stale files, names
# --------------------------------------------------------------------------


def test_writing_leaves_no_temporary_files(tmp_path: Path) -> None:
    folder = _write(tmp_path, FACTORY, FRONTEND, FACTORY, FRONTEND)
    assert not [p for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


def test_entries_and_groups_that_disappear_lose_their_files(tmp_path: Path) -> None:
    folder = _write(tmp_path, FACTORY, FRONTEND)
    notes = folder / "factory-fac1" / "README.txt"
    notes.write_text("operator's notes")
    other = folder / "factory-fac2" / "entry-ce2.xml"
    other.parent.mkdir()
    other.write_text("<other factory's file/>")
    fewer_entries = replace(FACTORY, entries=FACTORY.entries[:1], pilots=FACTORY.rows_of("ce1"), completed=())
    fewer_groups = replace(FRONTEND, rows=FRONTEND.rows_of("main"), unmatched_jobs={}, downtime_jobs={})
    _write(tmp_path, fewer_entries, fewer_groups)
    assert sorted(p.name for p in (folder / "factory-fac1").iterdir()) == ["README.txt", "entry-ce1.xml"]
    assert sorted(p.name for p in (folder / "frontend-vo-a").iterdir()) == ["group-main.xml"]
    assert other.is_file() and notes.is_file()
    groups = _root(folder / "frontend-vo-a.xml").findall("s:groups/s:group", NS)
    assert [g.get("name") for g in groups] == ["main"]


def test_names_with_slashes_or_dots_stay_inside_their_folder(tmp_path: Path, schema) -> None:
    evil_factory = FactorySnapshot(
        "../../etc", 1.0, 1, entries=(EntryStatus("../x"), EntryStatus("a/b"), EntryStatus(".."), EntryStatus("ok"))
    )
    evil_frontend = replace(
        FRONTEND,
        frontend="/abs",
        rows=(_row("../../g", "../e", 1.0), _row(".", "e", 1.0)),
        unmatched_jobs={},
        downtime_jobs={},
    )
    folder = _write(tmp_path, evil_factory, evil_frontend)
    written = _written(folder)
    assert len(written) == 2 + 4 + 2
    for path in written:
        assert path.resolve().is_relative_to(folder.resolve())
        assert path.parent in (folder, *[d for d in folder.iterdir() if d.is_dir()])
        _validate(schema, path)
    names = {_root(p).get("name") for p in written}
    assert {"../x", "a/b", "..", "ok", "../../g", "."} <= names
    assert not (tmp_path / "etc").exists()


def test_a_write_that_fails_is_a_monitoring_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(MonitoringError, match="cannot write"):
        XmlStatusWriter(blocker).write(FRONTEND)


# --------------------------------------------------------------------------
# The schema really constrains
# --------------------------------------------------------------------------


def _valid_factory_text(tmp_path: Path) -> str:
    return (_write(tmp_path, FACTORY) / "factory-fac1.xml").read_text()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda t: t.replace(' cycle="42"', ""), id="missing required attribute"),
        pytest.param(lambda t: t.replace('schemaVersion="1"', 'schemaVersion="2"'), id="other schema version"),
        pytest.param(lambda t: t.replace('running="10"', 'running="-1"'), id="negative count"),
        pytest.param(lambda t: t.replace('running="10"', 'running="1.5"'), id="fractional pilot count"),
        pytest.param(lambda t: t.replace('in_downtime="false"', 'in_downtime="no"'), id="not a boolean"),
        pytest.param(lambda t: t.replace("2024-05-01T12:00:00.250Z", "2024-05-01T14:00:00.250+02:00"), id="not UTC"),
        pytest.param(lambda t: t.replace('name="ce2"', 'name="ce1"', 1), id="duplicate entry"),
        pytest.param(lambda t: t.replace("<problems>", "<surprise /><problems>"), id="unknown element"),
        pytest.param(lambda t: t.replace(' name="fac1"', ' name="fac1" colour="red"'), id="unknown attribute"),
        pytest.param(lambda t: t.replace(NAMESPACE, "urn:updraft:monitoring:status:2"), id="other namespace"),
        pytest.param(lambda t: t.replace('<rejected_requests count="2" />', ""), id="missing element"),
    ],
)
def test_the_schema_rejects_documents_that_break_it(tmp_path: Path, schema, change) -> None:
    text = _valid_factory_text(tmp_path)
    assert schema.is_valid(text)
    broken = change(text)
    assert broken != text
    assert not schema.is_valid(broken)


def test_the_schema_rejects_an_unknown_remove_mode_in_a_group_file(tmp_path: Path, schema) -> None:
    text = (_write(tmp_path, FRONTEND) / "frontend-vo-a" / "group-main.xml").read_text()
    assert schema.is_valid(text)
    assert not schema.is_valid(text.replace('remove="idle"', 'remove="some"'))
    assert not schema.is_valid(text.replace('jobs_idle="3.333"', 'jobs_idle="3.3333"'))
