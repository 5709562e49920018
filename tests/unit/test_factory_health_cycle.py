"""Entry health in a whole factory cycle on in-memory daemons: what a state does to submissions and ads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from updraft import protocol
from updraft.factory import health_store
from updraft.factory.config import FactoryConfig, load_factory_config
from updraft.factory.decide import HEALTH_BOUND
from updraft.factory.health_model import EntryHealth, HealthState, Override
from updraft.factory.ports import FactoryPorts, fake_ports
from updraft.factory.service import run_cycle

from .conftest import ConfigTree, Snapshots

NOW = 1_800_000_000.0
ENTRY = """\
      {name}:
        grid_type: condor
        resource: "ce@{name}.lab 127.0.0.1:29620"
        limits:
          max_pilots: 100
          max_idle: 10
        frontends:
          vo:
            identity: frontend@lab
            require_credential: false
"""
FACTORY = """\
    name: test-factory
    wms_collector: 127.0.0.1:29619
    schedd: factory@lab
    work_dir: {work}
    cycle_seconds: 1
    pilot:
      executable: /bin/true
    health:
      degraded_max_idle: 2
      probe_count: 3
    entries:
"""


@pytest.fixture
def config(tree: ConfigTree, tmp_path: Path) -> FactoryConfig:
    entries = "".join(ENTRY.format(name=name) for name in ("good", "sick", "dead", "probe"))
    return load_factory_config(tree.factory(main=FACTORY.format(work=tmp_path / "work") + entries)).config


def request(entry: str, idle: int) -> dict[str, Any]:
    return {
        "MyType": protocol.REQUEST_TYPE,
        "Name": protocol.request_ad_name("vo", "main", entry, "test-factory"),
        "UpdraftSchema": protocol.SCHEMA,
        protocol.IDENTITY: "frontend@lab",
        protocol.R_FRONTEND: "vo",
        protocol.R_GROUP: "main",
        protocol.R_FACTORY: "test-factory",
        protocol.R_ENTRY: entry,
        protocol.R_SECURITY_CLASS: "default",
        protocol.R_IDLE: idle,
        protocol.R_MAX: 50,
        protocol.R_REMOVE: "none",
        protocol.R_REMOVE_MAX: 0,
        protocol.R_PILOT_COLLECTOR: "127.0.0.1:29618",
    }


def remember(config: FactoryConfig, **states: HealthState) -> None:
    """A health memory as a previous cycle left it: each entry in its state since a minute ago."""
    memory = health_store.HealthMemory(
        {name: EntryHealth(name, state, f"{state.value} before", NOW - 60) for name, state in states.items()},
        {},
        NOW - 1,
    )
    health_store.save_memory(health_store.memory_path(config.work_dir), memory)


def submitted_by_entry(result: Any) -> dict[str, int]:
    found: dict[str, int] = {}
    for decision in result.plan.decisions:
        found[decision.entry] = found.get(decision.entry, 0) + decision.submitted
    return found


def test_banned_gets_nothing_degraded_and_probing_are_capped_and_every_ad_says_so(config: FactoryConfig) -> None:
    remember(config, good=HealthState.ACTIVE, sick=HealthState.DEGRADED, dead=HealthState.BANNED)
    remember_probe = health_store.load_memory(health_store.memory_path(config.work_dir))
    probe = EntryHealth("probe", HealthState.PROBING, "probing before", NOW - 60)
    health_store.save_memory(
        health_store.memory_path(config.work_dir),
        health_store.HealthMemory({**remember_probe.states, "probe": probe}, {}, NOW - 1),
    )
    ports, wms, schedd = fake_ports(config, NOW)
    wms.ads.extend(request(entry, idle=8) for entry in ("good", "sick", "dead", "probe"))
    reporter = Snapshots()
    result = run_cycle(config, 1, NOW, releases={}, reporter=reporter, ports=ports)
    assert result.problems == ()
    assert submitted_by_entry(result) == {"good": 8, "sick": 2, "dead": 0, "probe": 3}
    assert sum(count for _, count in schedd.submitted) == 13
    decisions = {d.entry: d for d in result.plan.decisions}
    assert HEALTH_BOUND in decisions["dead"].bound_by
    assert any("entry banned since" in note and "banned before" in note for note in decisions["dead"].notes)
    assert HEALTH_BOUND in decisions["sick"].bound_by and HEALTH_BOUND in decisions["probe"].bound_by
    assert HEALTH_BOUND not in decisions["good"].bound_by
    ads = {ad[protocol.E_ENTRY]: ad for ad in wms.ads if ad["MyType"] == protocol.ENTRY_TYPE}
    assert {name: ad[protocol.E_HEALTH] for name, ad in ads.items()} == {
        "good": "active",
        "sick": "degraded",
        "dead": "banned",
        "probe": "probing",
    }
    assert ads["dead"][protocol.E_HEALTH_CAP] == 0 and ads["sick"][protocol.E_HEALTH_CAP] == 2
    assert protocol.E_HEALTH_CAP not in ads["good"]
    assert ads["dead"][protocol.E_HEALTH_SINCE] == int(NOW - 60)
    assert ads["dead"][protocol.E_HEALTH_REASON] == "banned before"
    [snapshot] = reporter.seen
    assert {row.entry: row.state for row in snapshot.health} == {
        "dead": "banned",
        "good": "active",
        "probe": "probing",
        "sick": "degraded",
    }
    path = health_store.memory_path(config.work_dir)
    saved, evidence = json.loads(path.read_text()), json.loads(health_store.history_path(path).read_text())
    assert evidence["evaluated_at"] == NOW and saved["entries"]["dead"]["state"] == "banned"


def test_a_degraded_entry_stays_within_its_cap_over_cycles(config: FactoryConfig) -> None:
    remember(config, sick=HealthState.DEGRADED)
    ports, wms, schedd = fake_ports(config, NOW)
    wms.ads.append(request("sick", idle=8))
    first = run_cycle(config, 1, NOW, releases={}, ports=ports)
    second = run_cycle(config, 2, NOW + 1, releases={}, ports=FactoryPorts.through(wms, config.schedd))
    assert submitted_by_entry(first)["sick"] == 2 and submitted_by_entry(second)["sick"] == 0
    assert len(schedd.jobs) == 2


def test_an_operator_override_is_picked_up_the_next_cycle_and_sent_in_the_snapshot(config: FactoryConfig) -> None:
    ports, wms, schedd = fake_ports(config, NOW)
    wms.ads.append(request("good", idle=4))
    ban = Override("good", HealthState.BANNED, "CE upgrade", NOW + 3600, "alice", NOW)
    health_store.save_overrides(health_store.overrides_path(config.work_dir), {"good": ban})
    reporter = Snapshots()
    result = run_cycle(config, 1, NOW, releases={}, reporter=reporter, ports=ports)
    assert submitted_by_entry(result)["good"] == 0 and schedd.submitted == []
    [snapshot] = reporter.seen
    [change] = snapshot.transitions
    assert (change.entry, change.old, change.new, change.by) == ("good", "active", "banned", "alice")
    row = next(row for row in snapshot.health if row.entry == "good")
    assert row.state == "banned" and "CE upgrade" in row.reason


def test_a_damaged_override_file_is_the_cycles_problem_and_applies_none(config: FactoryConfig) -> None:
    health_store.overrides_path(config.work_dir).parent.mkdir(parents=True, exist_ok=True)
    health_store.overrides_path(config.work_dir).write_text("{broken")
    ports, wms, _schedd = fake_ports(config, NOW)
    wms.ads.append(request("good", idle=4))
    result = run_cycle(config, 1, NOW, releases={}, ports=ports)
    assert submitted_by_entry(result)["good"] == 4
    assert any("health-overrides.json" in problem for problem in result.problems)


def test_a_cycle_that_cannot_read_its_queue_keeps_its_transitions_so_none_is_made_twice(
    config: FactoryConfig,
) -> None:
    banned = EntryHealth("dead", HealthState.BANNED, "8 of 8 pilots failed", NOW - 7200)
    path = health_store.memory_path(config.work_dir)
    health_store.save_memory(path, health_store.HealthMemory({"dead": banned}, {}, NOW - 60))
    ports, _wms, _schedd = fake_ports(config, NOW, schedd_unreachable=True)
    reporter = Snapshots()
    result = run_cycle(config, 1, NOW, releases={}, reporter=reporter, ports=ports)
    assert result.plan is None
    [change] = reporter.seen[0].transitions
    assert (change.entry, change.old, change.new) == ("dead", "banned", "probing")
    saved = health_store.load_memory(path)
    assert saved.states["dead"].state is HealthState.PROBING
    assert saved.evaluated_at == NOW - 60, "the unseen queue is looked at again from the last evaluation"
    ports, _wms, _schedd = fake_ports(config, NOW + 10)
    run_cycle(config, 2, NOW + 10, releases={}, reporter=reporter, ports=ports)
    assert reporter.seen[1].transitions == ()


def test_probing_sends_its_probes_beside_pilots_from_before_the_ban_and_no_more(config: FactoryConfig) -> None:
    """Pilots submitted before probing began are not probes: they neither take a probe's place nor count."""
    ports, wms, schedd = fake_ports(config, NOW - 5000)
    wms.ads.append(request("probe", idle=5))
    remember(config, probe=HealthState.ACTIVE)
    run_cycle(config, 1, NOW - 5000, releases={}, ports=ports)
    assert len(schedd.jobs) == 5, "the pilots from before the ban, still queued"
    probing = EntryHealth("probe", HealthState.PROBING, "ban over", NOW - 60, cap=3)
    health_store.save_memory(
        health_store.memory_path(config.work_dir), health_store.HealthMemory({"probe": probing}, {}, NOW - 1)
    )
    wms.ads[:] = [ad for ad in wms.ads if ad["MyType"] != protocol.REQUEST_TYPE] + [request("probe", idle=20)]
    schedd.now = NOW
    result = run_cycle(config, 2, NOW, releases={}, ports=ports)
    assert submitted_by_entry(result) == {"probe": 3}
    schedd.now = NOW + 60
    result = run_cycle(config, 3, NOW + 60, releases={}, ports=ports)
    assert submitted_by_entry(result) == {"probe": 0}, "three probes queued: none more"
    assert len(schedd.jobs) == 8
