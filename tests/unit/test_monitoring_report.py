"""Monitoring can never stop a cycle; writers are found in the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from updraft.errors import ConfigError
from updraft.monitoring import registry
from updraft.monitoring.config import validate_writers
from updraft.monitoring.report import Reporter
from updraft.monitoring.snapshot import FrontendSnapshot, GroupEntryRow, Snapshot
from updraft.monitoring.writers.json_status import JsonStatusWriter

ROW = GroupEntryRow("main", "ce1@fac", 10.0, 2.0, 5.0, 8, 3, 5, 0, 32, 4, 40, "none", ("group.max_idle_per_entry",))
SNAPSHOT = FrontendSnapshot("vo", 1000.0, 3, (ROW, ROW), {"main": 1}, {}, ("schedd x: down",), {"observe": 0.1})


class Exploding:
    name = "exploding"

    def write(self, snapshot) -> None:
        raise RuntimeError("backend down")


class Recording:
    name = "recording"

    def __init__(self) -> None:
        self.seen: list[Snapshot] = []

    def write(self, snapshot: Snapshot) -> None:
        self.seen.append(snapshot)


def test_a_failing_writer_is_counted_and_the_others_still_run() -> None:
    recording = Recording()
    reporter = Reporter((Exploding(), recording))
    assert reporter.report(SNAPSHOT) == {"exploding": "RuntimeError: backend down"}
    reporter.report(SNAPSHOT)
    assert recording.seen == [SNAPSHOT, SNAPSHOT]
    assert reporter.failures["exploding"] == 2


def test_json_writer_writes_the_snapshot_with_totals(tmp_path: Path) -> None:
    JsonStatusWriter(tmp_path).write(SNAPSHOT)
    data = json.loads((tmp_path / "frontend-vo.json").read_text())
    assert data["cycle"] == 3 and len(data["rows"]) == 2
    assert data["totals"]["jobs_idle"] == 20.0 and data["totals"]["requested_idle"] == 8
    assert data["totals"]["slots_cores"] == 64
    assert not list(tmp_path.glob(".*tmp"))


def test_registry_builds_configured_writers_and_names_unknown_ones(tmp_path: Path) -> None:
    (writer,) = registry.build(validate_writers(["json"]), tmp_path)
    assert writer.name == "json"
    with pytest.raises(ConfigError, match=r"unknown writer 'rrdx' .*available: json, rrd"):
        registry.plugin("rrdx")
