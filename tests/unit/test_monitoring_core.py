"""The monitoring core: writer config sections, the isolating reporter, the metrics catalogue,
and the factory's snapshot."""

from __future__ import annotations

import threading
import time
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from updraft import protocol
from updraft.errors import ConfigError
from updraft.factory.completed import CompletedStats
from updraft.factory.config import FactoryConfig
from updraft.factory.model import EntryDecision, FactoryPlan, Pilot, PilotState, Remove, Request, Submit
from updraft.factory.snapshot import CycleFacts, factory_snapshot
from updraft.monitoring import metrics
from updraft.monitoring.config import MonitoringConfig
from updraft.monitoring.files import path_part
from updraft.monitoring.report import Reporter
from updraft.monitoring.snapshot import (
    CompletedRow,
    EntryStatus,
    FactorySnapshot,
    FrontendSnapshot,
    GroupEntryRow,
    PilotRow,
)

NOW = 1_800_000_000.0

# --------------------------------------------------------------------------
# Config: each writer's own section
# --------------------------------------------------------------------------


def test_a_list_of_names_means_each_writer_with_its_defaults() -> None:
    config = MonitoringConfig.model_validate({"writers": ["json"]})
    assert list(config.writers) == ["json"]
    assert config.model_dump(mode="json")["writers"] == {"json": {}}


@pytest.mark.parametrize(
    ("writers", "problem"),
    [
        ({"nosuch": {}}, r"unknown writer 'nosuch' \(available: json, rrd, xml, influxdb, status_pages"),
        ({"json": {"colour": "red"}}, r"json\.colour: unknown key"),
        (["json", "json"], r"listed twice"),
        ("json", r"expected a mapping of writer name to settings"),
    ],
)
def test_bad_writer_sections_are_named(writers: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        MonitoringConfig.model_validate({"writers": writers})


def test_the_factory_config_carries_a_validated_monitoring_section(tmp_path: Path) -> None:
    config = FactoryConfig.model_validate(
        {
            "name": "fac",
            "wms_collector": "127.0.0.1:1",
            "schedd": "s@x",
            "monitoring": {"dir": str(tmp_path), "writers": {"json": None}},
        }
    )
    assert config.monitoring.dir == tmp_path and list(config.monitoring.writers) == ["json"]
    with pytest.raises(TypeError):
        config.monitoring.writers["json2"] = None


def test_an_unknown_writer_is_reported_by_the_config_loader_with_its_file(tmp_path: Path) -> None:
    from updraft.frontend.config import load_frontend_config

    path = tmp_path / "frontend.yaml"
    path.write_text(
        "name: vo\nvo_collector: 127.0.0.1:1\nwms_collector: 127.0.0.1:2\n"
        "factories: {fac: {identity: u@d}}\ngroups: {main: {}}\n"
        "monitoring: {writers: {rrdd: {}}}\n"
    )
    with pytest.raises(ConfigError, match=r"frontend\.yaml: monitoring\.writers: .*unknown writer 'rrdd'"):
        load_frontend_config(path)


# --------------------------------------------------------------------------
# Reporter: nothing a writer does stops the cycle
# --------------------------------------------------------------------------

SNAPSHOT = FrontendSnapshot("vo", NOW, 1)


class Raising:
    name = "raising"

    def write(self, snapshot: object) -> None:
        raise OSError("disk full")


class Hanging:
    """Blocks until released: a backend that does not answer."""

    name = "hanging"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def write(self, snapshot: object) -> None:
        self.calls += 1
        self.release.wait(10)


class Recording:
    name = "recording"

    def __init__(self) -> None:
        self.seen: list[object] = []

    def write(self, snapshot: object) -> None:
        self.seen.append(snapshot)


def test_a_slow_writer_is_left_behind_at_the_deadline_and_skipped_while_busy() -> None:
    hanging, recording = Hanging(), Recording()
    reporter = Reporter((hanging, Raising(), recording), deadline_seconds=0.2)
    started = time.monotonic()
    first = reporter.report(SNAPSHOT)
    assert time.monotonic() - started < 2
    assert "still writing after 0.2 s" in first["hanging"] and first["raising"] == "OSError: disk full"
    second = reporter.report(SNAPSHOT)
    assert "still writing an earlier snapshot" in second["hanging"] and hanging.calls == 1
    hanging.release.set()
    time.sleep(0.1)
    third = reporter.report(SNAPSHOT)
    assert "hanging" not in third and hanging.calls == 2
    assert recording.seen == [SNAPSHOT] * 3
    assert reporter.failures == {"hanging": 2, "raising": 3}


# --------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------


def test_every_name_fits_the_strictest_backend() -> None:
    names = [spec.name for spec in metrics.CATALOGUE]
    assert len(set(names)) == len(names)
    for spec in metrics.CATALOGUE:
        assert len(set(spec.field_names)) == len(spec.field_names), spec.name
        for field in spec.fields:
            assert metrics.FIELD_NAME.fullmatch(field.name), f"{spec.name}.{field.name} is no RRD data-source name"


FACTORY = FactorySnapshot(
    "fac",
    NOW,
    7,
    entries=(EntryStatus("ce1", False, 8, waiting=2, running=3), EntryStatus("ce2", True, 1, held=1)),
    pilots=(
        PilotRow(
            "ce1",
            "vo",
            waiting=2,
            running=3,
            cores_running=24,
            requested_idle=5,
            requested_max=50,
            submitted=2,
            limits_hit=("entry.max_idle",),
        ),
    ),
    completed=(
        CompletedRow(
            "ce1",
            "vo",
            pilots=10,
            ok=7,
            failed=2,
            no_report=1,
            goodput_core_seconds=500,
            failed_by_step={"validate": 2},
        ),
    ),
    rejected_requests=1,
    problems=("schedd slow",),
    timings={"observe": 0.5},
)
FRONTEND = FrontendSnapshot(
    "vo",
    NOW,
    3,
    rows=(
        GroupEntryRow(
            "main", "ce1", 10.0, 2.0, 5.0, 8, 3, 5, 0, 32, 4, 40, "none", ("group.max_idle_per_entry", "entry.curb")
        ),
    ),
    unmatched_jobs={"main": 3, "lost": 2},
    timings={"publish": 0.25},
)


@pytest.mark.parametrize("snapshot", [FACTORY, FRONTEND], ids=["factory", "frontend"])
def test_every_measurement_has_every_field_of_its_spec(snapshot) -> None:
    found = metrics.measurements(snapshot)
    assert found
    for m in found:
        assert set(m.values) == set(m.spec.field_names)
        assert [t for t, _ in m.tags] == list(m.spec.tags)
        assert m.time == NOW


def _find(snapshot, name: str, *tags: str) -> metrics.Measurement:
    (found,) = [m for m in metrics.measurements(snapshot) if m.name == name and m.tag_values == tags]
    return found


def test_factory_numbers_land_in_their_measurements() -> None:
    total = _find(FACTORY, "updraft_factory", "fac")
    assert (total.values["idle"], total.values["running"], total.values["held"]) == (2, 3, 1)
    assert (total.values["entries_down"], total.values["rejected_requests"], total.values["problems"]) == (1, 1, 1)
    assert total.values["observe_seconds"] == 0.5 and total.values["act_seconds"] == 0
    assert _find(FACTORY, "updraft_factory_entry", "fac", "ce2").values["in_downtime"] == 1
    row = _find(FACTORY, "updraft_factory_pilots", "fac", "ce1", "vo").values
    assert (row["cores_running"], row["requested_idle"], row["limits_hit"]) == (24, 5, 1)
    assert _find(FACTORY, "updraft_factory_completed", "fac", "ce1", "vo").values["good_core_seconds"] == 500
    assert _find(FACTORY, "updraft_factory_failures", "fac", "ce1", "vo", "validate").values["pilots"] == 2


def test_frontend_groups_include_those_with_only_unmatched_jobs() -> None:
    lost = _find(FRONTEND, "updraft_frontend_group", "vo", "lost").values
    assert lost["jobs_unmatched"] == 2 and lost["jobs_idle"] == 0
    match = _find(FRONTEND, "updraft_frontend_match", "vo", "main", "ce1").values
    assert (match["limits_hit"], match["curbs_hit"]) == (1, 1)
    total = _find(FRONTEND, "updraft_frontend", "vo").values
    assert (total["jobs_unmatched"], total["publish_seconds"], total["decide_seconds"]) == (5, 0.25, 0)


def test_the_catalogue_counts_every_completed_counter() -> None:
    counters = {f.name for f in metrics.FACTORY_COMPLETED.fields}
    assert {f.name for f in fields(CompletedRow)} - {
        "entry",
        "frontend",
        "failed_by_step",
        "goodput_core_seconds",
    } <= counters


# --------------------------------------------------------------------------
# File names from other parties' names
# --------------------------------------------------------------------------


@given(st.text(min_size=1, max_size=80))
def test_path_parts_are_single_safe_components(name: str) -> None:
    part = path_part(name)
    assert "/" not in part and part not in (".", "..") and "\0" not in part and part


def test_plain_names_stay_readable_and_odd_ones_are_encoded_apart() -> None:
    assert path_part("ce1@site.org") == "ce1@site.org"
    assert path_part("..") != path_part("...") and path_part("a/b") == "_612f62"
    assert path_part("x" * 300).startswith("_h") and path_part("x" * 300) != path_part("x" * 299 + "y")


# --------------------------------------------------------------------------
# The factory's snapshot
# --------------------------------------------------------------------------

CONFIG = FactoryConfig.model_validate(
    {
        "name": "fac",
        "wms_collector": "127.0.0.1:1",
        "schedd": "s@x",
        "entries": {
            "ce1": {
                "grid_type": "condor",
                "resource": "ce x:1",
                "attributes": {protocol.E_CPUS: 8, protocol.E_NODES: 2},
            },
            "ce2": {"grid_type": "condor", "resource": "ce x:2"},
        },
    }
)


def pilot(n: int, entry: str, state: PilotState, frontend: str = "vo", group: str = "main") -> Pilot:
    return Pilot(f"{n}.0", entry, frontend, group, "default", "c", state, NOW - 60, NOW - 60)


def request(entry: str, group: str, idle: int, max_pilots: int) -> Request:
    return Request(entry, "vo", group, "default", "u@d", idle, max_pilots)


def test_the_factory_snapshot_sums_groups_per_entry_and_frontend() -> None:
    pilots = (
        pilot(1, "ce1", PilotState.RUNNING),
        pilot(2, "ce1", PilotState.RUNNING, group="other"),
        pilot(3, "ce1", PilotState.PENDING),
        pilot(4, "ce2", PilotState.HELD, frontend="vo2"),
        pilot(5, "ce2", PilotState.COMPLETED),
        pilot(6, "gone", PilotState.RUNNING),
    )
    plan = FactoryPlan(
        NOW,
        decisions=(
            EntryDecision(
                "ce1",
                "vo",
                "main",
                request("ce1", "main", 4, 10),
                (Submit("ce1", "vo", "main", "default", 3, (3,)),),
                bound_by=("entry.max_idle",),
            ),
            EntryDecision(
                "ce1",
                "vo",
                "other",
                request("ce1", "other", 1, 5),
                (Remove(("9.0",), "stale"),),
                bound_by=("entry.max_idle", "frontend.max_pilots"),
            ),
        ),
    )
    completed = {("ce1", "vo"): CompletedStats(pilots=3, ok=2, failed=1, failed_by_step={"fetch": 1})}
    snapshot = factory_snapshot(
        CONFIG, CycleFacts(NOW, 4, pilots, plan, frozenset({"ce2"}), completed, ("p",), {"observe": 1.0})
    )
    assert [e.entry for e in snapshot.entries] == ["ce1", "ce2", "gone"]
    ce1, ce2, _ = snapshot.entries
    assert (ce1.cores_per_pilot, ce1.running, ce1.pending, ce1.in_downtime) == (16, 2, 1, False)
    assert (ce2.held, ce2.in_downtime) == (1, True)
    row = snapshot.pilots[0]
    assert (row.entry, row.frontend, row.running, row.pending, row.cores_running) == ("ce1", "vo", 2, 1, 32)
    assert (row.requested_idle, row.requested_max, row.submitted, row.removed) == (5, 15, 3, 1)
    assert row.limits_hit == ("entry.max_idle", "frontend.max_pilots")
    assert [(r.entry, r.frontend) for r in snapshot.pilots] == [("ce1", "vo"), ("ce2", "vo2"), ("gone", "vo")]
    (done,) = snapshot.completed
    assert (done.pilots, done.failed, done.failed_by_step) == (3, 1, {"fetch": 1})
    assert snapshot.problems == ("p",) and snapshot.timings == {"observe": 1.0}


def test_an_unreadable_queue_still_gives_a_snapshot_of_the_entries() -> None:
    snapshot = factory_snapshot(CONFIG, CycleFacts(NOW, 1, problems=("schedd down",)))
    assert [e.entry for e in snapshot.entries] == ["ce1", "ce2"] and snapshot.pilots == ()
    assert snapshot.totals()["running"] == 0


class Ordered:
    """Records the order in which writers ran, across threads."""

    def __init__(self, name: str, log: list[str], delay: float = 0.0) -> None:
        self.name, self.log, self.delay = name, log, delay

    def write(self, snapshot: object) -> None:
        time.sleep(self.delay)
        self.log.append(self.name)


def test_a_writer_runs_after_the_writer_it_requires_and_sees_its_output() -> None:
    order: list[str] = []
    writers = (Ordered("rrd", order, delay=0.2), Ordered("json", order), Ordered("status_pages", order))
    reporter = Reporter(writers, deadline_seconds=5, requires={"status_pages": ("rrd",)})
    assert reporter.report(SNAPSHOT) == {}
    assert order.index("status_pages") > order.index("rrd") and order[0] == "json"


def test_a_writer_behind_a_slow_one_in_its_chain_is_reported_as_still_writing() -> None:
    hanging = Hanging()
    order: list[str] = []
    reporter = Reporter((hanging, Ordered("pages", order)), deadline_seconds=0.1, requires={"pages": ("hanging",)})
    failed = reporter.report(SNAPSHOT)
    assert set(failed) == {"hanging", "pages"} and order == []
    hanging.release.set()


def test_status_pages_must_read_the_folder_the_rrd_writer_writes() -> None:
    with pytest.raises(ValueError, match=r"status_pages.rrd_subdir 'graphs' must be the rrd writer's subdir 'rrd'"):
        MonitoringConfig.model_validate({"writers": {"rrd": {}, "status_pages": {"rrd_subdir": "graphs"}}})
    with pytest.raises(ValueError, match=r"status_pages needs the rrd writer"):
        MonitoringConfig.model_validate({"writers": ["status_pages", "rrd"]})


@pytest.mark.parametrize("example", ["factory.yaml", "frontend.yaml"])
def test_the_commented_monitoring_example_in_etc_validates(example: str) -> None:
    import yaml

    text = (Path(__file__).parents[2] / "etc" / example).read_text()
    start = text.index("# monitoring:\n")
    block = []
    for line in text[start:].splitlines():
        if not (line.startswith("# monitoring") or line.startswith("#   ")):
            break
        block.append(line[2:])
    config = MonitoringConfig.model_validate(yaml.safe_load("\n".join(block))["monitoring"])
    assert list(config.writers) == ["json", "xml", "rrd", "status_pages", "influxdb"]


THIRD_PARTY = """
from pathlib import Path
from updraft.config import ConfigModel
from updraft.monitoring.plugin import WriterPlugin


class Settings(ConfigModel):
    greeting: str = "hello"


class Writer:
    name = "{name}"

    def __init__(self, settings, directory):
        self.settings, self.directory = settings, directory

    def write(self, snapshot):
        (self.directory / "third-party.txt").write_text(f"{{self.settings.greeting}} cycle {{snapshot.cycle}}")


PLUGIN = WriterPlugin("{name}", Settings, Writer)
"""


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed distribution publishing two writers under the entry point group, one named like ours."""
    site = tmp_path / "site"
    (site / "acme_writer").mkdir(parents=True)
    (site / "acme_writer" / "__init__.py").write_text("")
    (site / "acme_writer" / "good.py").write_text(THIRD_PARTY.format(name="acme"))
    (site / "acme_writer" / "shadow.py").write_text(THIRD_PARTY.format(name="json"))
    info = site / "acme_writer-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-writer\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[updraft.monitoring.writers]\nacme = acme_writer.good:PLUGIN\njson = acme_writer.shadow:PLUGIN\n"
    )
    monkeypatch.syspath_prepend(str(site))
    return tmp_path / "monitoring"


def test_a_third_party_writer_registers_through_its_entry_point_and_cannot_shadow_ours(third_party: Path) -> None:
    from updraft.monitoring import registry

    assert "acme" in registry.names() and registry.names().count("json") == 1
    config = MonitoringConfig.model_validate(
        {"dir": str(third_party), "writers": {"json": {}, "acme": {"greeting": "hi"}}}
    )
    reporter = registry.reporter(config)
    third_party.mkdir()
    assert reporter.report(SNAPSHOT) == {}
    assert (third_party / "third-party.txt").read_text() == "hi cycle 1"
    assert (third_party / "frontend-vo.json").is_file()  # ours, not the shadow's
    with pytest.raises(ValueError, match=r"acme\.greting: unknown key"):
        MonitoringConfig.model_validate({"writers": {"acme": {"greting": "hi"}}})
