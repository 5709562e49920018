"""The factory's whole cycle on in-memory daemons (`updraft.fakes`): observe, decide, act, report.

These prove the loop's wiring and its rules for silence (a port that times
out): the lab tests prove the same against real daemons.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from updraft import protocol
from updraft.errors import CondorError
from updraft.factory.config import FactoryConfig, load_factory_config
from updraft.factory.ports import FactoryPorts, fake_ports
from updraft.factory.service import FactoryService, run_cycle

from .conftest import ConfigTree, Snapshots

NOW = 1_800_000_000.0
FACTORY = """\
    name: test-factory
    wms_collector: 127.0.0.1:29619
    schedd: factory@lab
    work_dir: {work}
    cycle_seconds: 1
    pilot:
      executable: /bin/true
    entries:
      site1:
        grid_type: condor
        resource: "ce@site1.lab 127.0.0.1:29620"
        attributes:
          GLIDEIN_Site: Site1
        limits:
          max_pilots: 100
          max_idle: 10
        frontends:
          vo:
            identity: frontend@lab
            require_credential: false
"""


@pytest.fixture
def config(tree: ConfigTree, tmp_path: Path) -> FactoryConfig:
    return load_factory_config(tree.factory(main=FACTORY.format(work=tmp_path / "work"))).config


def request(idle: int, max_pilots: int = 20) -> dict[str, Any]:
    """A request ad as the WMS collector holds it, AuthenticatedIdentity added by the collector."""
    return {
        "MyType": protocol.REQUEST_TYPE,
        "Name": protocol.request_ad_name("vo", "main", "site1", "test-factory"),
        "UpdraftSchema": protocol.SCHEMA,
        protocol.IDENTITY: "frontend@lab",
        protocol.R_FRONTEND: "vo",
        protocol.R_GROUP: "main",
        protocol.R_FACTORY: "test-factory",
        protocol.R_ENTRY: "site1",
        protocol.R_SECURITY_CLASS: "default",
        protocol.R_IDLE: idle,
        protocol.R_MAX: max_pilots,
        protocol.R_REMOVE: "none",
        protocol.R_REMOVE_MAX: 0,
        protocol.R_PILOT_COLLECTOR: "127.0.0.1:29618",
    }


def test_a_request_becomes_pilots_once_and_the_entries_are_advertised(config: FactoryConfig) -> None:
    ports, wms, schedd = fake_ports(config, NOW)
    wms.ads.append(request(idle=3))
    first = run_cycle(config, 1, NOW, releases={}, ports=ports)
    assert first.plan is not None and first.problems == ()
    assert first.submitted == 3 and sum(count for _, count in schedd.submitted) == 3
    assert {ad["UpdraftEntry"] for ad in schedd.jobs} == {"site1"}
    assert {ad["MyType"] for ad in wms.ads} >= {protocol.ENTRY_TYPE, protocol.FACTORY_TYPE}
    # the queue is the memory: three idle pilots now satisfy the same request
    second = run_cycle(config, 2, NOW + 1, releases={}, ports=FactoryPorts.through(wms, config.schedd))
    assert second.submitted == 0 and len(schedd.jobs) == 3


def test_a_schedd_that_does_not_answer_means_nothing_decided_not_zero_pilots(config: FactoryConfig) -> None:
    ports, wms, schedd = fake_ports(config, NOW, schedd_unreachable=True)
    wms.ads.append(request(idle=3))
    reporter = Snapshots()
    result = run_cycle(config, 1, NOW, releases={}, reporter=reporter, ports=ports)
    assert result.plan is None and result.view.pilots is None
    assert result.submitted == result.removed == 0 and schedd.submitted == [] and schedd.acted == []
    assert any("no answer" in problem for problem in result.problems)
    assert len(reporter.seen) == 1, "a cycle that went wrong is still reported"
    factory_ad = next(ad for ad in wms.ads if ad["MyType"] == protocol.FACTORY_TYPE)
    assert not any(key.startswith("UpdraftPilots") for key in factory_ad), "unknown pilots are not published as 0"


def test_a_silent_collector_stops_the_cycle_without_acting(config: FactoryConfig) -> None:
    ports, _wms, schedd = fake_ports(config, NOW, collector_unreachable=True)
    schedd.jobs.append(
        {
            "ClusterId": 7,
            "ProcId": 0,
            "JobStatus": 1,
            "UpdraftPilot": True,
            "UpdraftFactory": "test-factory",
            "UpdraftEntry": "site1",
            "UpdraftFrontend": "vo",
            "UpdraftGroup": "main",
            "QDate": int(NOW) - 60,
            "EnteredCurrentStatus": int(NOW) - 60,
        }
    )
    result = run_cycle(config, 1, NOW, releases={}, ports=ports)
    assert result.plan is None, "the schedd is located through the collector: no queue, no decision"
    assert schedd.acted == [] and schedd.submitted == [] and len(schedd.jobs) == 1
    assert any("no answer" in problem for problem in result.problems)


def test_the_service_keeps_cycling_through_silence_and_withdraws_on_stop(config: FactoryConfig) -> None:
    _ports, wms, schedd = fake_ports(config, NOW, schedd_unreachable=True)
    wms.ads.append(request(idle=2))
    service = FactoryService(
        Path("unused.yaml"), config, connect_ports=lambda _: FactoryPorts.through(wms, config.schedd)
    )
    timer = threading.Timer(2.5, service.signals.stop)
    timer.start()
    try:
        cycles = service.run(max_cycles=5)
    finally:
        timer.cancel()
    assert cycles >= 2, "silence is a problem of each cycle, not the end of the service"
    assert schedd.submitted == []
    assert not [ad for ad in wms.ads if ad["MyType"] in (protocol.ENTRY_TYPE, protocol.FACTORY_TYPE)]
    assert not service.pid_path.exists()


def finished_pilot(cluster: int, at: float) -> dict[str, Any]:
    """A pilot of ours that left the queue at `at`, as the schedd's history holds it."""
    return {"ClusterId": cluster, "ProcId": 0, "JobStatus": 4, "EnteredCurrentStatus": int(at),
            "CompletionDate": int(at), "RemoteWallClockTime": 600.0, "UpdraftPilot": True,
            "UpdraftFactory": "test-factory", "UpdraftEntry": "site1", "UpdraftFrontend": "vo",
            "UpdraftGroup": "main"}  # fmt: skip


def test_a_pilot_that_left_the_queue_is_counted_once_across_cycles(config: FactoryConfig) -> None:
    ports, wms, schedd = fake_ports(config, NOW)
    schedd.finished.append(finished_pilot(41, NOW - 100))
    first = run_cycle(config, 1, NOW, releases={}, ports=ports)
    assert [(key, stats.pilots) for key, stats in first.completed.items()] == [(("site1", "vo"), 1)]
    second = run_cycle(config, 2, NOW + 60, releases={}, ports=FactoryPorts.through(wms, config.schedd))
    assert second.completed == {}, "the checkpoint remembers it"
    assert second.totals[("site1", "vo")].pilots == 1


def test_a_history_that_does_not_answer_costs_the_accounting_only(
    config: FactoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports, wms, schedd = fake_ports(config, NOW)
    wms.ads.append(request(idle=2))

    def silent(*_: Any, **__: Any) -> list[dict[str, Any]]:
        raise CondorError("history of schedd factory@lab: no answer within 20 s")

    monkeypatch.setattr(schedd, "history", silent)
    result = run_cycle(config, 1, NOW, releases={}, ports=ports)
    assert result.submitted == 2, "the queue was read: the cycle acts"
    assert any("history" in problem for problem in result.problems)
    assert not (config.work_dir / "completed-checkpoint.json").exists(), "the checkpoint stays where it was"
